"""The static description of one quantized matmul, and its array operands.

:func:`jaxq.kernels.quantized_matmul` turns its arguments into a hashable
:class:`MatmulProblem` (what a backend's ``supports`` predicate looks at) and a
:class:`MatmulArgs` (the arrays a backend's ``matmul`` receives, with the activation
already flattened to 2-D). Backends never see the user's leading dimensions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax

from jaxq.core.dtypes import QuantDType, as_quant_dtype, quint8
from jaxq.kernels.weights import PackedWeight, WeightSpec

__all__ = ["DynamicQuantization", "MatmulArgs", "MatmulProblem"]

MODES = ("static", "dynamic", "weight_only")


@dataclasses.dataclass(frozen=True)
class DynamicQuantization:
    """How a float activation is quantized on the fly (a static, hashable config).

    Attributes:
      granularity: ``"per_tensor"`` (one scale / zero point per call, torch's x86 dynamic
        Linear) or ``"per_token"`` (one per row of the flattened activation).
      dtype: ``jaxq.quint8`` (default, torch) or ``jaxq.qint8``.
      reduce_range: halve the range (quint8 [0, 127]), torch's x86/fbgemm default.
      symmetric: symmetric mapping (zero point at the middle of the range).

    The per-tensor asymmetric setting reproduces torch's
    ``quantized::linear_dynamic`` on x86 exactly: the qparams come from the batch
    min/max through ATen's ``ChooseQuantizationParams`` (computed in float64, zero point
    nudged to an integer, scales below 6.1e-5 raised) and values are quantized as fbgemm
    does, ``clamp(rint(fma(x, 1/scale, zero_point)), 0, 255)`` with one rounding. Every
    other setting uses torchao's ``choose_qparams_affine`` / ``quantize_affine``
    (``eps = finfo(float32).eps``), as torchao's dynamic int8 activations do.
    """

    granularity: str = "per_tensor"
    dtype: QuantDType = quint8
    reduce_range: bool = True
    symmetric: bool = False

    def __post_init__(self):
        if self.granularity not in ("per_tensor", "per_token"):
            raise ValueError(f"granularity={self.granularity!r} must be 'per_tensor' or "
                             "'per_token'")
        dtype = as_quant_dtype(self.dtype)
        if dtype.name not in ("quint8", "qint8", "uint8", "int8"):
            raise ValueError(f"dtype={self.dtype!r} must be quint8/uint8 or qint8/int8")
        object.__setattr__(self, "dtype", dtype)

    @property
    def quant_range(self) -> tuple[int, int]:
        lo, hi = int(self.dtype.quant_min), int(self.dtype.quant_max)
        if self.reduce_range:
            lo, hi = lo // 2, hi // 2
        return lo, hi

    @property
    def torch_per_tensor(self) -> bool:
        """True for the setting that follows ATen's ChooseQuantizationParams."""
        return self.granularity == "per_tensor" and not self.symmetric


@dataclasses.dataclass(frozen=True)
class MatmulProblem:
    """Everything static about one call; backends decide from it whether they run it.

    Attributes:
      m, k, n: the flattened activation is ``(m, k)``, the weight ``(n, k)``.
      mode: ``"static"`` (integer activations with given qparams), ``"dynamic"`` (float
        activations quantized in the call) or ``"weight_only"`` (float activations).
      x_dtype: dtype name of the activation as passed (``"uint8"``, ``"float32"`` ...).
      x_granularity: ``"per_tensor"`` or ``"per_token"`` activation qparams
        (``"none"`` for weight-only).
      x_has_zero_point: False when the activation zero point is statically absent.
      dynamic: the :class:`DynamicQuantization` in dynamic mode, else None.
      weight: the weight's :class:`WeightSpec`.
      has_bias: a float32 ``(n,)`` bias is added.
      relu: ReLU is fused.
      out_dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"uint8"``, ``"int8"`` or
        ``"int32"`` (the raw accumulators, no epilogue).
      out_range: ``(quant_min, quant_max)`` of a requantized output, else None.
      row_groups: dynamic per-tensor qparams are taken separately over ``row_groups``
        equal blocks of rows (1 normally; the batch size when the call is vmapped).
    """

    m: int
    k: int
    n: int
    mode: str
    x_dtype: str
    x_granularity: str
    x_has_zero_point: bool
    dynamic: DynamicQuantization | None
    weight: WeightSpec
    has_bias: bool
    relu: bool
    out_dtype: str
    out_range: tuple[int, int] | None
    row_groups: int = 1

    @property
    def requantize(self) -> bool:
        return self.out_range is not None


class MatmulArgs(NamedTuple):
    """The arrays of one call (None where absent). Shapes after flattening:

    x: ``(m, k)`` activation (uint8/int8 in static mode, float otherwise).
    weight: the :class:`~jaxq.kernels.weights.PackedWeight`.
    x_scale: float32 ``()`` or ``(m,)`` (static mode; None otherwise).
    x_zero_point: int32 like ``x_scale``, or None.
    bias: float32 ``(n,)`` or None.
    out_scale: float32 ``()`` when requantizing, else None.
    out_zero_point: int32 ``()`` when requantizing, else None.
    """

    x: jax.Array
    weight: PackedWeight
    x_scale: Any = None
    x_zero_point: Any = None
    bias: Any = None
    out_scale: Any = None
    out_zero_point: Any = None
