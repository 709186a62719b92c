"""Observers for torchao's affine quantization: any granularity, block-wise min/max.

:class:`AffineQuantizedObserverBase` carries torchao's configuration (mapping type,
target dtype, granularity, range, eps, dtypes); :class:`AffineQuantizedMinMaxObserver`
(torchao's) records the running per-block min/max and turns it into qparams with
:func:`jaxq.core.affine.choose_qparams_affine_with_min_max`.

State: ``{"min_val": f32[...], "max_val": f32[...]}`` of the block grid (reduced
dimensions dropped unless ``keepdim``). Statistics are stored in float32 (exact for
float16/bfloat16 inputs: min/max only select values) and cast back to the input's
dtype before choosing qparams, so bfloat16 inputs give torchao's bfloat16 scales.

Sizing: the grid depends on the input shape. By default the first eager call sizes
it (and fixes ``block_size``/``original_dtype``); inside ``jit``/``scan`` pass
``input_shape=`` (and ``original_dtype=`` for non-float32 inputs) at construction.

Example:
  >>> import jax.numpy as jnp, jaxq
  >>> from jaxq.observer import AffineQuantizedMinMaxObserver
  >>> obs = AffineQuantizedMinMaxObserver(jaxq.MappingType.ASYMMETRIC, jaxq.uint8,
  ...                                     jaxq.PerAxis(0))
  >>> _ = obs(jnp.ones((2, 4)))
  >>> obs.block_size, obs.calculate_qparams()[0].shape
  ((1, 4), (2,))
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.affine import choose_qparams_affine_with_min_max, reduction_params
from jaxq.core.dtypes import as_quant_dtype
from jaxq.core.granularity import Granularity, MappingType, ZeroPointDomain, get_block_size
from jaxq.core.ranges import quant_range
from jaxq.observer.base import ObserverBase, ObserverCore, is_concrete
from jaxq.observer.partial import _with_args

__all__ = ["AffineQuantizedCore", "AffineQuantizedMinMaxCore",
           "AffineQuantizedObserverBase", "AffineQuantizedMinMaxObserver"]

_FLOATS = ("float32", "float16", "bfloat16")


def _float_dtype(dtype: Any, argument: str) -> np.dtype | None:
    if dtype is None:
        return None
    name = str(dtype).removeprefix("torch.")
    if name in _FLOATS:
        return jnp.dtype(name)
    try:
        return jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{argument}={dtype!r} is not a dtype") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class AffineQuantizedCore(ObserverCore):
    """torchao's affine observer configuration (``dtype`` is the target dtype).

    Attributes:
      mapping_type, granularity, quant_min, quant_max, eps, scale_dtype,
      zero_point_dtype, preserve_zero, zero_point_domain, keepdim: torchao's.
      input_shape: the observed input shape (fixes the state size), or None.
      original_dtype: the observed input dtype (qparams are chosen in it).
    """

    mapping_type: MappingType = MappingType.ASYMMETRIC
    granularity: Granularity | None = None
    quant_min: int | float | None = None
    quant_max: int | float | None = None
    eps: float | None = None
    scale_dtype: Any = None
    zero_point_dtype: Any = None
    preserve_zero: bool = True
    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT
    keepdim: bool = False
    input_shape: tuple[int, ...] | None = None
    original_dtype: Any = jnp.dtype(jnp.float32)

    @property
    def block_size(self) -> tuple[int, ...] | None:
        if self.input_shape is None:
            return None
        return get_block_size(self.input_shape, self.granularity)

    def stat_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the per-block statistics for an input of ``input_shape``."""
        view_shape, dims = reduction_params(get_block_size(input_shape, self.granularity),
                                            input_shape)
        if self.keepdim:
            return tuple(1 if i in dims else s for i, s in enumerate(view_shape))
        return tuple(s for i, s in enumerate(view_shape) if i not in dims)

    def block_min_max(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-block min and max of ``x`` (float32), in the state's shape."""
        view_shape, dims = reduction_params(get_block_size(x.shape, self.granularity),
                                            x.shape)
        blocks = x.reshape(view_shape)
        return (jnp.min(blocks, axis=dims, keepdims=self.keepdim),
                jnp.max(blocks, axis=dims, keepdims=self.keepdim))

    def init(self) -> dict[str, jax.Array]:
        shape = (0,) if self.input_shape is None else self.stat_shape(self.input_shape)
        return {"min_val": jnp.full(shape, jnp.inf, jnp.float32),
                "max_val": jnp.full(shape, -jnp.inf, jnp.float32)}

    def reset(self, state):
        del state
        return self.init()

    def qparams_from_min_max(self, min_val: jax.Array, max_val: jax.Array
                             ) -> tuple[jax.Array, jax.Array | None]:
        """torchao's ``choose_qparams_affine_with_min_max`` in ``original_dtype``."""
        if min_val.size == 0:
            raise ValueError("Expecting the observer has min_val and max_val, please run "
                             "the observer before calling calculate_qparams")
        never_observed = (min_val == jnp.inf) & (max_val == -jnp.inf)
        dtype = jnp.dtype(self.original_dtype)
        zero_point_dtype = self.zero_point_dtype
        if zero_point_dtype is None:
            # torchao: int32 for ASYMMETRIC; symmetric keeps the float dtype.
            zero_point_dtype = (jnp.int32 if self.mapping_type is MappingType.ASYMMETRIC
                                else dtype)
        scale, zero_point = choose_qparams_affine_with_min_max(
            min_val.astype(dtype), max_val.astype(dtype), self.mapping_type, (),
            self.dtype, self.quant_min, self.quant_max, self.eps, self.scale_dtype,
            zero_point_dtype)
        scale = jnp.where(never_observed, jnp.ones_like(scale), scale)
        zero_point = jnp.where(never_observed, jnp.zeros_like(zero_point), zero_point)
        if self.zero_point_domain is ZeroPointDomain.NONE:
            return scale, None
        return scale, zero_point

    def update(self, state, x):
        raise NotImplementedError(f"{type(self).__name__} does not observe; use a "
                                  "subclass such as AffineQuantizedMinMaxCore")

    def calculate_qparams(self, state):
        return self.qparams_from_min_max(state["min_val"], state["max_val"])


@dataclasses.dataclass(frozen=True, kw_only=True)
class AffineQuantizedMinMaxCore(AffineQuantizedCore):
    """Running per-block min/max (torchao's ``AffineQuantizedMinMaxObserver``)."""

    def update(self, state, x):
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"input must be a float array; got {x.dtype}")
        if x.size == 0:
            return state
        batch_min, batch_max = self.block_min_max(
            jax.lax.stop_gradient(x).astype(jnp.float32))
        min_val, max_val = state["min_val"], state["max_val"]
        if min_val.size == 0:
            return {"min_val": batch_min, "max_val": batch_max}
        if min_val.shape != batch_min.shape:
            raise ValueError(f"Can't update existing min_val - shape mismatch: the state "
                             f"has shape {min_val.shape} but an input of shape {x.shape} "
                             f"gives {batch_min.shape}")
        return {"min_val": jnp.minimum(min_val, batch_min),
                "max_val": jnp.maximum(max_val, batch_max)}


def _make_core(core_type, mapping_type, target_dtype, granularity, quant_min, quant_max,
               eps, scale_dtype, zero_point_dtype, preserve_zero, zero_point_domain,
               keepdim, input_shape, original_dtype):
    if granularity is None:
        raise ValueError("granularity must be given (PerTensor, PerAxis, PerGroup, "
                         "PerRow, PerToken or PerBlock); got None")
    if not isinstance(granularity, Granularity):
        raise TypeError(f"granularity={granularity!r} must be a jaxq Granularity")
    if not isinstance(mapping_type, MappingType):
        raise TypeError(f"mapping_type={mapping_type!r} must be a MappingType "
                        "(SYMMETRIC, SYMMETRIC_NO_CLIPPING_ERR or ASYMMETRIC)")
    if zero_point_domain is None:
        raise ValueError("zero_point_domain=None: use ZeroPointDomain.NONE instead")
    if not isinstance(zero_point_domain, ZeroPointDomain):
        raise TypeError(f"zero_point_domain={zero_point_domain!r} must be a ZeroPointDomain")
    if not preserve_zero:
        warnings.warn("preserve_zero=False is deprecated and will be removed in a future "
                      "release. Only preserve_zero=True is supported.", DeprecationWarning,
                      stacklevel=3)
    if zero_point_domain is not ZeroPointDomain.INT:
        warnings.warn(f"zero_point_domain={zero_point_domain} is deprecated and will be "
                      "removed in a future release. Only ZeroPointDomain.INT is supported.",
                      DeprecationWarning, stacklevel=3)
    target = as_quant_dtype(target_dtype, "target_dtype")
    quant_range(target, quant_min, quant_max)  # validates the custom range early
    original = _float_dtype(original_dtype, "original_dtype") or jnp.dtype(jnp.float32)
    if input_shape is not None:
        input_shape = tuple(int(s) for s in input_shape)
    core = core_type(
        dtype=target, mapping_type=mapping_type, granularity=granularity,
        quant_min=quant_min, quant_max=quant_max,
        eps=None if eps is None else float(eps),
        scale_dtype=_float_dtype(scale_dtype, "scale_dtype"),
        zero_point_dtype=None if zero_point_dtype is None else jnp.dtype(
            str(zero_point_dtype).removeprefix("torch.")),
        preserve_zero=bool(preserve_zero), zero_point_domain=zero_point_domain,
        keepdim=bool(keepdim), input_shape=input_shape, original_dtype=original)
    if input_shape is not None:
        core.stat_shape(input_shape)  # raises early on an incompatible granularity
    return core


class AffineQuantizedObserverBase(ObserverBase):
    """torch's / torchao's ``AffineQuantizedObserverBase`` over an affine core.

    Args:
      mapping_type: a :class:`jaxq.MappingType`.
      target_dtype: the quantized dtype (``jaxq.int8``, ``jnp.uint8``, ``jaxq.int4``...).
      granularity: a :class:`jaxq.Granularity` (PerTensor, PerAxis, PerGroup, PerRow,
        PerToken, PerBlock).
      quant_min, quant_max: custom range inside the dtype's (torchao's rule).
      eps: smallest scale (default ``finfo(input dtype).smallest_normal``).
      scale_dtype: default the input dtype.
      zero_point_dtype: default int32 (ASYMMETRIC) / the input dtype (symmetric).
      preserve_zero, zero_point_domain: deprecated in torchao (warn); NONE gives
        ``zero_point=None``.
      keepdim: keep reduced dimensions (size 1) in the statistics and qparams.
      input_shape, original_dtype: jaxq extension: fix the state size ahead of time.

    Attributes:
      block_size: ``get_block_size(input_shape, granularity)`` once sized, else None.
      original_dtype: the observed input dtype.
    """

    with_args = classmethod(_with_args)
    _core_type: type[AffineQuantizedCore] = AffineQuantizedCore

    def __init__(self, mapping_type: MappingType, target_dtype: Any,
                 granularity: Granularity, quant_min: int | float | None = None,
                 quant_max: int | float | None = None, eps: float | None = None,
                 scale_dtype: Any = None, zero_point_dtype: Any = None,
                 preserve_zero: bool = True,
                 zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
                 keepdim: bool = False, *, input_shape: tuple[int, ...] | None = None,
                 original_dtype: Any = None):
        super().__init__(_make_core(
            self._core_type, mapping_type, target_dtype, granularity, quant_min,
            quant_max, eps, scale_dtype, zero_point_dtype, preserve_zero,
            zero_point_domain, keepdim, input_shape, original_dtype))

    @property
    def target_dtype(self):
        return self.core.dtype

    @property
    def block_size(self) -> tuple[int, ...] | None:
        return self.core.block_size

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if self.core.input_shape is None and x.size:
            if not is_concrete(x):
                raise ValueError(
                    f"{type(self).__name__} is not sized: pass input_shape= (and "
                    "original_dtype=) at construction to use it inside jit/scan, or call "
                    "it once eagerly")
            self.core = dataclasses.replace(self.core, input_shape=tuple(x.shape),
                                            original_dtype=jnp.dtype(x.dtype))
        return super().__call__(x)

    forward = __call__


class AffineQuantizedMinMaxObserver(AffineQuantizedObserverBase):
    """Running block-wise min/max observer (torchao's ``AffineQuantizedMinMaxObserver``).

    ``calculate_qparams()`` returns ``(scale, zero_point)`` of the block grid (None
    zero point with ``ZeroPointDomain.NONE``). Before any observation the eager call
    raises ``ValueError`` (torchao asserts).
    """

    _core_type = AffineQuantizedMinMaxCore
