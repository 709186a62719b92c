"""torch <-> Flax weight layouts for observers and fake-quantize modules.

torch stores a Linear weight as ``(out, in)`` and a ConvNd weight as
``(out, in/groups, *kernel_size)``; its weight observers and fake-quants use
``ch_axis=0`` to mean "output channel". Flax stores ``nnx.Linear.kernel`` as
``(in, out)`` and ``nnx.Conv.kernel`` as ``(*kernel_size, in/groups, out)``. This module
is the ONE place that translates a torch weight ``ch_axis`` to the Flax kernel axis
(:func:`flax_kernel_axis`) and builds ``qconfig.weight()`` for a Flax kernel with the
translated axis and per-channel state pre-sized to the kernel (so the first call works
under ``nnx.jit``/``lax.scan`` with a fixed state shape).

Per-channel statistics are computed over every axis but the channel axis, so the
translated module observes exactly the numbers torch observes on the transposed
weight; scale/zero_point come out with torch's shapes (``[out]``).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.fake_quantize import default_per_channel_weight_fake_quant
  >>> from jaxq.nn.layout import weight_fake_quant_for_kernel
  >>> kernel = jnp.ones((3, 3, 4, 8))            # Flax Conv2d kernel, 8 outputs
  >>> fq = weight_fake_quant_for_kernel(default_per_channel_weight_fake_quant, kernel)
  >>> fq.ch_axis, fq.scale.shape
  (3, (8,))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxq.core.qscheme import QScheme
from jaxq.fake_quantize.fused import FusedFakeQuantizeCore, FusedMovingAvgObsFakeQuantize
from jaxq.fake_quantize.learnable import _LearnableFakeQuantize
from jaxq.observer.base import as_observed_input
from jaxq.observer.per_channel import per_channel_min_max

__all__ = ["flax_kernel_axis", "torch_weight_axis", "weight_fake_quant_for_kernel",
           "weight_observer_for_kernel", "kernel_to_torch", "kernel_from_torch"]


def _check_ndim(kernel_ndim: Any) -> int:
    if isinstance(kernel_ndim, bool) or not isinstance(kernel_ndim, (int, np.integer)) \
            or kernel_ndim < 2:
        raise ValueError(f"kernel_ndim={kernel_ndim!r} must be an int >= 2 (a Linear "
                         "kernel has 2 dims, a ConvNd kernel N + 2)")
    return int(kernel_ndim)


def flax_kernel_axis(torch_axis: int, kernel_ndim: int) -> int:
    """The Flax kernel axis holding torch weight axis ``torch_axis``.

    torch ``(out, in, *k)`` -> Flax ``(*k, in, out)``: torch 0 -> ``ndim - 1``,
    torch 1 -> ``ndim - 2``, torch ``2 + i`` -> ``i``. Negative axes count from the end
    of torch's layout.

    Args:
      torch_axis: an axis of torch's weight (``-ndim <= torch_axis < ndim``).
      kernel_ndim: the number of kernel dimensions (2 for Linear, N + 2 for ConvNd).

    Returns:
      The non-negative Flax kernel axis.

    Raises:
      ValueError: a bad ``kernel_ndim`` or an out-of-range ``torch_axis``.

    Example:
      >>> flax_kernel_axis(0, 4), flax_kernel_axis(1, 2), flax_kernel_axis(2, 4)
      (3, 0, 0)
    """
    ndim = _check_ndim(kernel_ndim)
    if isinstance(torch_axis, bool) or not isinstance(torch_axis, (int, np.integer)) \
            or not -ndim <= torch_axis < ndim:
        raise ValueError(f"torch_axis={torch_axis!r} must be an int in [{-ndim}, "
                         f"{ndim - 1}] for a {ndim}-d weight")
    axis = int(torch_axis) % ndim
    if axis == 0:
        return ndim - 1
    if axis == 1:
        return ndim - 2
    return axis - 2


def torch_weight_axis(flax_axis: int, kernel_ndim: int) -> int:
    """The inverse of :func:`flax_kernel_axis`.

    Example:
      >>> torch_weight_axis(3, 4), torch_weight_axis(0, 2)
      (0, 1)
    """
    ndim = _check_ndim(kernel_ndim)
    for axis in range(ndim):
        if flax_kernel_axis(axis, ndim) == int(flax_axis) % ndim:
            return axis
    raise AssertionError("unreachable")  # pragma: no cover


def kernel_to_torch(kernel: Any) -> jax.Array:
    """A Flax kernel ``(*k, in, out)`` in torch's weight layout ``(out, in, *k)``.

    Used at conversion time only (never per call).

    Example:
      >>> import jax.numpy as jnp
      >>> kernel_to_torch(jnp.zeros((3, 5, 2, 4))).shape
      (4, 2, 3, 5)
    """
    kernel = np.asarray(kernel) if not isinstance(kernel, jax.Array) else kernel
    ndim = _check_ndim(kernel.ndim)
    return kernel.transpose((ndim - 1, ndim - 2, *range(ndim - 2)))


def kernel_from_torch(weight: Any) -> jax.Array:
    """A torch weight ``(out, in, *k)`` in Flax's kernel layout ``(*k, in, out)``.

    Example:
      >>> import jax.numpy as jnp
      >>> kernel_from_torch(jnp.zeros((4, 2, 3, 5))).shape
      (3, 5, 2, 4)
    """
    weight = np.asarray(weight) if not isinstance(weight, jax.Array) else weight
    ndim = _check_ndim(weight.ndim)
    return weight.transpose((*range(2, ndim), 1, 0))


def _kernel_shape(kernel: Any) -> tuple[int, ...]:
    shape = getattr(kernel, "shape", None)
    if shape is None:
        if isinstance(kernel, Sequence) and all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in kernel):
            shape = tuple(kernel)
        else:
            raise TypeError(f"kernel must be an array (or a shape tuple); got "
                            f"{type(kernel).__name__}")
    shape = tuple(int(d) for d in shape)
    _check_ndim(len(shape))
    return shape


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelFusedFakeQuantizeCore(FusedFakeQuantizeCore):
    """The fused fake-quant step on a Flax kernel's output axis.

    torch's ``fused_moving_avg_obs_fake_quant`` supports per-channel only on axis 0,
    which is the output channel of torch's ``(out, in, *k)`` weight. On the Flax
    kernel the output channel is the last axis, so the statistics are reduced over
    every other axis (the same numbers, the same qparams) instead.
    """

    def observe_fused(self, observer_state, x):
        if not self.is_per_channel:
            return super().observe_fused(observer_state, x)
        batch_min, batch_max = per_channel_min_max(as_observed_input(x), self.ch_axis)
        return {"min_val": self._moving_average(observer_state["min_val"], batch_min),
                "max_val": self._moving_average(observer_state["max_val"], batch_max)}


def _qscheme(module: Any) -> QScheme | None:
    qscheme = getattr(module, "qscheme", None)
    return qscheme if isinstance(qscheme, QScheme) else None


def _for_kernel(factory: Callable[..., Any], kernel: Any, what: str) -> Any:
    if factory is None or not callable(factory):
        raise TypeError(f"{what} factory must be an observer / fake-quantize constructor "
                        f"(a class or Class.with_args(...)); got {factory!r}")
    shape = _kernel_shape(kernel)
    probe = factory()
    qscheme = _qscheme(probe)
    if qscheme is None or not qscheme.is_per_channel:
        return probe  # per-tensor (or not an observer, e.g. Identity): no axis to move
    torch_axis = getattr(probe, "ch_axis", 0)
    axis = flax_kernel_axis(torch_axis, len(shape))
    channels = shape[axis]
    kwargs: dict[str, Any] = {"ch_axis": axis, "num_channels": channels}
    if isinstance(probe, _LearnableFakeQuantize):
        kwargs["channel_len"] = channels
    module = factory(**kwargs)
    if isinstance(module, FusedMovingAvgObsFakeQuantize):
        fields = {f.name: getattr(module.core, f.name)
                  for f in dataclasses.fields(FusedFakeQuantizeCore)}
        module.core = KernelFusedFakeQuantizeCore(**fields)
    # Remember torch's axis so conversions can report torch's ch_axis.
    module.torch_ch_axis = int(torch_axis) % len(shape)
    return module


def weight_fake_quant_for_kernel(factory: Callable[..., Any], kernel: Any) -> Any:
    """``factory()`` (a qconfig's ``weight``) built for a Flax kernel.

    Per-tensor factories are simply called. For per-channel ones the torch
    ``ch_axis`` (read from a probe instance: bound by ``with_args`` or the observer's
    default, 0) is translated with :func:`flax_kernel_axis`, and the state is pre-sized
    to the kernel's size along that axis (``num_channels``; ``channel_len`` for
    ``_LearnableFakeQuantize``). ``FusedMovingAvgObsFakeQuantize`` (torch: axis 0
    only) gets :class:`KernelFusedFakeQuantizeCore`, which reduces over the
    translated axis.

    Args:
      factory: an observer or fake-quantize class or ``with_args`` factory.
      kernel: the Flax kernel (or its shape): ``(in, out)`` or ``(*k, in/groups, out)``.

    Returns:
      A new module. Per-channel modules carry ``torch_ch_axis`` (the torch axis they
      stand for) besides ``ch_axis`` (the Flax kernel axis).

    Raises:
      TypeError: ``factory`` is not callable or ``kernel`` has no shape.
      ValueError: the kernel has fewer than 2 dims or the axis is out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxq.qconfig import get_default_qat_qconfig
      >>> fq = weight_fake_quant_for_kernel(get_default_qat_qconfig("x86").weight,
      ...                                   jnp.ones((16, 4)))
      >>> fq.ch_axis, fq.torch_ch_axis, fq.scale.shape
      (1, 0, (4,))
    """
    return _for_kernel(factory, kernel, "weight fake-quant")


def weight_observer_for_kernel(factory: Callable[..., Any], kernel: Any) -> Any:
    """``factory()`` (a qconfig's ``weight`` observer) built for a Flax kernel.

    Same rules as :func:`weight_fake_quant_for_kernel`: per-channel observers get the
    translated ``ch_axis`` and ``num_channels`` = the kernel's size on that axis.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxq.observer import default_per_channel_weight_observer
      >>> obs = weight_observer_for_kernel(default_per_channel_weight_observer,
      ...                                  jnp.ones((3, 2, 5)))
      >>> _ = obs(jnp.ones((3, 2, 5)))
      >>> obs.ch_axis, obs.calculate_qparams()[0].shape
      (2, (5,))
    """
    return _for_kernel(factory, kernel, "weight observer")
