"""Fused float containers: ``torch.ao.nn.intrinsic`` (``ConvReLU2d``, ``ConvBn2d``, ...).

Each container is an ``nnx.Sequential`` of Flax modules that ``fuse_modules`` builds
and ``prepare_qat``/``convert`` later swap for a QAT or quantized module. Calling one
runs its children in order (``ConvAdd2d``/``ConvAddReLU2d`` take two inputs). Children
are reachable as ``mod[0]``, ``mod[1]``... as in torch.

Type checks (torch's, with Flax's classes): the convolution must be exactly
``nnx.Conv`` with ``len(kernel_size)`` equal to the container's rank (Flax's Conv is
rank-agnostic where torch has Conv1d/2d/3d), the linear layer exactly ``nnx.Linear``,
batch norms exactly ``nnx.BatchNorm`` (rank-agnostic in Flax, so BNReLU2d and BNReLU3d
accept the same module; the rank shows only in the input) and activations exactly the
:mod:`jaxq.nn.modules` classes. ``jax.nn.relu``/``nnx.relu`` (the function) is
accepted where torch wants ``nn.ReLU`` and is wrapped into :class:`jaxq.nn.ReLU`.

Deviations from torch: wrong types raise ``TypeError`` (torch: ``AssertionError``);
jaxq additionally checks that the batch norm's ``num_features`` equals the
conv/linear output features (torch fails later, at the first call).

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.nn import ReLU
  >>> from jaxq.nn.intrinsic import ConvReLU2d
  >>> fused = ConvReLU2d(nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0)), ReLU())
  >>> fused(jnp.ones((1, 8, 8, 3))).shape
  (1, 8, 8, 4)
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
from flax import nnx

from jaxq.nn.modules import LeakyReLU, ReLU, Tanh

__all__ = ["_FusedModule", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "LinearReLU",
           "ConvBn1d", "ConvBn2d", "ConvBn3d", "ConvBnReLU1d", "ConvBnReLU2d",
           "ConvBnReLU3d", "BNReLU2d", "BNReLU3d", "LinearBn1d", "LinearLeakyReLU",
           "LinearTanh", "ConvAdd2d", "ConvAddReLU2d"]


def _describe(module: Any) -> str:
    if isinstance(module, nnx.Conv) and type(module) is nnx.Conv:
        return f"Conv{len(tuple(module.kernel_size))}d (nnx.Conv)"
    return getattr(type(module), "__name__", repr(module))


def _as_relu(module: Any) -> Any:
    return ReLU() if module is jax.nn.relu or module is nnx.relu else module


class _FusedModule(nnx.Sequential):
    """Base of the fused containers (torch's ``_FusedModule``, a Sequential).

    Subclasses list the exact classes of their children in ``_TYPES`` (an entry
    ``(nnx.Conv, rank)`` means a Conv with that many spatial dims).
    """

    _TYPES: ClassVar[tuple[Any, ...]] = ()

    def __init__(self, *modules: Any):
        modules = tuple(_as_relu(m) for m in modules)
        if len(modules) != len(self._TYPES) or not all(
                _matches(m, t) for m, t in zip(modules, self._TYPES)):
            raise TypeError(
                f"Incorrect types for input modules of {type(self).__name__}: "
                f"{', '.join(_describe(m) for m in modules)}; expected "
                f"{', '.join(_expected(t) for t in self._TYPES)}")
        _check_features(type(self).__name__, modules)
        super().__init__(*modules)

    def __getitem__(self, index: int) -> Any:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)


def _matches(module: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):
        cls, rank = expected
        return type(module) is cls and len(tuple(module.kernel_size)) == rank
    return type(module) is expected


def _expected(expected: Any) -> str:
    if isinstance(expected, tuple):
        return f"Conv{expected[1]}d (nnx.Conv with {expected[1]} spatial dims)"
    return expected.__name__


def _check_features(owner: str, modules: tuple[Any, ...]) -> None:
    for producer, bn in zip(modules, modules[1:]):
        if isinstance(bn, nnx.BatchNorm) and isinstance(producer, (nnx.Conv, nnx.Linear)):
            out = producer.out_features
            out = out[-1] if isinstance(out, tuple) else out
            if bn.num_features != out:
                raise ValueError(f"{owner}: the BatchNorm has num_features="
                                 f"{bn.num_features} but the preceding layer has "
                                 f"{out} output features")


def _conv(rank: int) -> tuple[type, int]:
    return (nnx.Conv, rank)


class ConvReLU1d(_FusedModule):
    """Conv1d (``nnx.Conv``, 1 spatial dim) then ReLU; input ``(N, L, C)``."""
    _TYPES = (_conv(1), ReLU)

    def __init__(self, conv: nnx.Conv, relu: Any):
        super().__init__(conv, relu)


class ConvReLU2d(_FusedModule):
    """Conv2d then ReLU; input ``(N, H, W, C)``."""
    _TYPES = (_conv(2), ReLU)

    def __init__(self, conv: nnx.Conv, relu: Any):
        super().__init__(conv, relu)


class ConvReLU3d(_FusedModule):
    """Conv3d then ReLU; input ``(N, D, H, W, C)``."""
    _TYPES = (_conv(3), ReLU)

    def __init__(self, conv: nnx.Conv, relu: Any):
        super().__init__(conv, relu)


class LinearReLU(_FusedModule):
    """``nnx.Linear`` then ReLU."""
    _TYPES = (nnx.Linear, ReLU)

    def __init__(self, linear: nnx.Linear, relu: Any):
        super().__init__(linear, relu)


class ConvBn1d(_FusedModule):
    """Conv1d then BatchNorm (channels-last ``nnx.BatchNorm``)."""
    _TYPES = (_conv(1), nnx.BatchNorm)

    def __init__(self, conv: nnx.Conv, bn: nnx.BatchNorm):
        super().__init__(conv, bn)


class ConvBn2d(_FusedModule):
    """Conv2d then BatchNorm."""
    _TYPES = (_conv(2), nnx.BatchNorm)

    def __init__(self, conv: nnx.Conv, bn: nnx.BatchNorm):
        super().__init__(conv, bn)


class ConvBn3d(_FusedModule):
    """Conv3d then BatchNorm."""
    _TYPES = (_conv(3), nnx.BatchNorm)

    def __init__(self, conv: nnx.Conv, bn: nnx.BatchNorm):
        super().__init__(conv, bn)


class ConvBnReLU1d(_FusedModule):
    """Conv1d, BatchNorm, ReLU."""
    _TYPES = (_conv(1), nnx.BatchNorm, ReLU)

    def __init__(self, conv: nnx.Conv, bn: nnx.BatchNorm, relu: Any):
        super().__init__(conv, bn, relu)


class ConvBnReLU2d(_FusedModule):
    """Conv2d, BatchNorm, ReLU."""
    _TYPES = (_conv(2), nnx.BatchNorm, ReLU)

    def __init__(self, conv: nnx.Conv, bn: nnx.BatchNorm, relu: Any):
        super().__init__(conv, bn, relu)


class ConvBnReLU3d(_FusedModule):
    """Conv3d, BatchNorm, ReLU."""
    _TYPES = (_conv(3), nnx.BatchNorm, ReLU)

    def __init__(self, conv: nnx.Conv, bn: nnx.BatchNorm, relu: Any):
        super().__init__(conv, bn, relu)


class BNReLU2d(_FusedModule):
    """BatchNorm then ReLU on ``(N, H, W, C)`` inputs (torch's BatchNorm2d + ReLU)."""
    _TYPES = (nnx.BatchNorm, ReLU)

    def __init__(self, batch_norm: nnx.BatchNorm, relu: Any):
        super().__init__(batch_norm, relu)


class BNReLU3d(_FusedModule):
    """BatchNorm then ReLU on ``(N, D, H, W, C)`` inputs (torch's BatchNorm3d + ReLU)."""
    _TYPES = (nnx.BatchNorm, ReLU)

    def __init__(self, batch_norm: nnx.BatchNorm, relu: Any):
        super().__init__(batch_norm, relu)


class LinearBn1d(_FusedModule):
    """``nnx.Linear`` then BatchNorm over the feature (last) axis."""
    _TYPES = (nnx.Linear, nnx.BatchNorm)

    def __init__(self, linear: nnx.Linear, bn: nnx.BatchNorm):
        super().__init__(linear, bn)


class LinearLeakyReLU(_FusedModule):
    """``nnx.Linear`` then :class:`jaxq.nn.LeakyReLU`."""
    _TYPES = (nnx.Linear, LeakyReLU)

    def __init__(self, linear: nnx.Linear, leaky_relu: LeakyReLU):
        super().__init__(linear, leaky_relu)


class LinearTanh(_FusedModule):
    """``nnx.Linear`` then :class:`jaxq.nn.Tanh`."""
    _TYPES = (nnx.Linear, Tanh)

    def __init__(self, linear: nnx.Linear, tanh: Tanh):
        super().__init__(linear, tanh)


def _check_add(add: Any) -> Any:
    if not callable(add):
        raise TypeError(f"add must be a callable taking two arrays (e.g. jnp.add or "
                        f"operator.add); got {add!r}")
    return add


class ConvAdd2d(_FusedModule):
    """``add(conv(x1), x2)`` (torch's ConvAdd2d; ``add`` is any two-array callable).

    The container holds only the conv as its layer, as torch's does.
    """
    _TYPES = (_conv(2),)

    def __init__(self, conv: nnx.Conv, add: Callable[[Any, Any], Any]):
        super().__init__(conv)
        self.add = _check_add(add)

    def __call__(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return self.add(self[0](x1), x2)


class ConvAddReLU2d(_FusedModule):
    """``relu(add(conv(x1), x2))`` (torch's ConvAddReLU2d)."""
    _TYPES = (_conv(2),)

    def __init__(self, conv: nnx.Conv, add: Callable[[Any, Any], Any], relu: Any):
        super().__init__(conv)
        self.add = _check_add(add)
        relu = _as_relu(relu)
        if type(relu) is not ReLU:
            raise TypeError(f"Incorrect types for input modules of ConvAddReLU2d: relu "
                            f"must be jaxq.nn.ReLU; got {_describe(relu)}")
        self.relu = relu

    def __call__(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return self.relu(self.add(self[0](x1), x2))
