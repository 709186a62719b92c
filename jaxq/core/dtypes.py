"""Quantized dtypes: what each stores, and its default integer range.

torch has dedicated quantized dtypes (``torch.quint8``, ``torch.qint8``, ...) next to
plain integer dtypes (``torch.int8``, ``torch.uint8``, ...) that torchao quantizes into.
jaxq models both with one frozen, hashable :class:`QuantDType`, so a dtype can be a
static argument of a jitted function and a field of a frozen config.

Example:
  >>> import jaxq
  >>> jaxq.quint8.quant_min, jaxq.quint8.quant_max, jaxq.quint8.storage_dtype
  (0, 255, dtype('uint8'))
  >>> jaxq.as_quant_dtype("torch.qint8") is jaxq.qint8
  True
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import jax.numpy as jnp
import ml_dtypes
import numpy as np


@dataclasses.dataclass(frozen=True)
class QuantDType:
    """A quantized (or quantization-target) dtype.

    Attributes:
      name: jaxq's name, equal to torch's attribute name (``"quint8"``, ``"int4"``).
      storage_dtype: the numpy/jax dtype holding one unpacked value (``uint8`` for
        ``quint4x2``; the float dtype itself for float targets).
      quant_min: smallest representable value (float for float8 targets).
      quant_max: largest representable value.
      bits: bits per value.
      is_signed: whether negative values are representable.
      is_float: whether this is a floating-point target (float8, float16, ...).
      values_per_byte: how many values a packed byte holds (2 for ``quint4x2``, 4 for
        ``quint2x4``, 1 otherwise).
      is_quantized: True for torch's dedicated quantized dtypes (``quint8``, ``qint8``,
        ``qint32``, ``quint4x2``, ``quint2x4``), the ones ``torch.quantize_per_tensor``
        accepts.
    """

    name: str
    storage_dtype: np.dtype
    quant_min: int | float
    quant_max: int | float
    bits: int
    is_signed: bool
    is_float: bool = False
    values_per_byte: int = 1
    is_quantized: bool = False

    @property
    def torch_name(self) -> str:
        """The name torch prints, e.g. ``"torch.quint8"``."""
        return f"torch.{self.name}"

    @property
    def is_packed(self) -> bool:
        return self.values_per_byte > 1

    @property
    def is_integer(self) -> bool:
        return not self.is_float

    def __repr__(self) -> str:
        return f"jaxq.{self.name}"

    # dtypes are immutable singletons compared with `is` (like torch's); copying a model
    # (copy.deepcopy in the eager workflow) must keep them identical.
    def __copy__(self) -> QuantDType:
        return self

    def __deepcopy__(self, memo: Any) -> QuantDType:
        return self


def _int(name, storage, lo, hi, bits, *, values_per_byte=1, is_quantized=False):
    return QuantDType(name, np.dtype(storage), lo, hi, bits, lo < 0,
                      values_per_byte=values_per_byte, is_quantized=is_quantized)


def _float(name, storage, bits):
    info = ml_dtypes.finfo(storage)
    return QuantDType(name, np.dtype(storage), float(info.min), float(info.max), bits,
                      True, is_float=True)


# torch's dedicated quantized dtypes.
quint8 = _int("quint8", np.uint8, 0, 255, 8, is_quantized=True)
qint8 = _int("qint8", np.int8, -128, 127, 8, is_quantized=True)
qint32 = _int("qint32", np.int32, -(2**31), 2**31 - 1, 32, is_quantized=True)
quint4x2 = _int("quint4x2", np.uint8, 0, 15, 4, values_per_byte=2, is_quantized=True)
quint2x4 = _int("quint2x4", np.uint8, 0, 3, 2, values_per_byte=4, is_quantized=True)

# Plain integer targets (torchao quantizes into these).
uint8 = _int("uint8", np.uint8, 0, 255, 8)
int8 = _int("int8", np.int8, -128, 127, 8)
int16 = _int("int16", np.int16, -(2**15), 2**15 - 1, 16)
uint16 = _int("uint16", np.uint16, 0, 2**16 - 1, 16)
int32 = _int("int32", np.int32, -(2**31), 2**31 - 1, 32)

# Sub-byte targets, stored unpacked one value per byte.
int1, int2, int3, int4, int5, int6, int7 = (
    _int(f"int{b}", np.int8, -(2 ** (b - 1)), 2 ** (b - 1) - 1, b) for b in range(1, 8))
uint1, uint2, uint3, uint4, uint5, uint6, uint7 = (
    _int(f"uint{b}", np.uint8, 0, 2**b - 1, b) for b in range(1, 8))

# Float targets: float16 for torch's fp16 dynamic paths, float8 for torchao.
float16 = _float("float16", jnp.float16, 16)
bfloat16 = _float("bfloat16", jnp.bfloat16, 16)
float32 = _float("float32", jnp.float32, 32)
float8_e4m3fn = _float("float8_e4m3fn", jnp.float8_e4m3fn, 8)
float8_e5m2 = _float("float8_e5m2", jnp.float8_e5m2, 8)


class TorchAODType(enum.Enum):
    """torchao's placeholder enum for the signed sub-byte dtypes INT1..INT7.

    Each member's ``value`` is the matching :class:`QuantDType` (``jaxq.int1`` ...).
    """

    INT1 = int1
    INT2 = int2
    INT3 = int3
    INT4 = int4
    INT5 = int5
    INT6 = int6
    INT7 = int7


ALL_DTYPES: tuple[QuantDType, ...] = (
    quint8, qint8, qint32, quint4x2, quint2x4, uint8, int8, int16, uint16, int32,
    int1, int2, int3, int4, int5, int6, int7, uint1, uint2, uint3, uint4, uint5, uint6,
    uint7, float16, bfloat16, float32, float8_e4m3fn, float8_e5m2)

_BY_NAME = {d.name: d for d in ALL_DTYPES}
# numpy dtypes name the same things as jaxq's plain dtypes.
_BY_NUMPY = {np.dtype(np.uint8): uint8, np.dtype(np.int8): int8,
             np.dtype(np.int16): int16, np.dtype(np.uint16): uint16,
             np.dtype(np.int32): int32, np.dtype(jnp.float16): float16,
             np.dtype(jnp.bfloat16): bfloat16, np.dtype(jnp.float32): float32,
             np.dtype(jnp.float8_e4m3fn): float8_e4m3fn,
             np.dtype(jnp.float8_e5m2): float8_e5m2}


def as_quant_dtype(dtype: Any, argument: str = "dtype") -> QuantDType:
    """Converts anything that names a quantized dtype into a :class:`QuantDType`.

    Accepts a QuantDType, a :class:`TorchAODType` member, a numpy/jax dtype or scalar
    type (``jnp.int8``), a name (``"quint8"``, ``"torch.quint8"``), or a torch dtype
    object when torch is installed (``torch.qint8``).

    Raises:
      TypeError: naming ``argument`` and the accepted values, for anything else.
    """
    if isinstance(dtype, QuantDType):
        return dtype
    if isinstance(dtype, TorchAODType):
        return dtype.value
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name in _BY_NAME:
            return _BY_NAME[name]
    elif type(dtype).__module__.startswith("torch"):
        # torch.dtype objects print as "torch.quint8"; torchao's enum as "TorchAODType.INT4".
        text = str(dtype)
        if text.startswith("TorchAODType."):
            return TorchAODType[text.split(".", 1)[1]].value
        return as_quant_dtype(text, argument)
    elif type(dtype).__name__ == "TorchAODType":
        return TorchAODType[dtype.name].value
    else:
        try:
            numpy_dtype = np.dtype(dtype)
        except TypeError:
            numpy_dtype = None
        if numpy_dtype is not None and numpy_dtype in _BY_NUMPY:
            return _BY_NUMPY[numpy_dtype]
    accepted = ", ".join(sorted(_BY_NAME))
    raise TypeError(f"{argument}={dtype!r} is not a quantized dtype; accepted: {accepted} "
                    "(as jaxq objects, names, numpy/jax dtypes or torch dtypes)")
