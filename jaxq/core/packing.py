"""Sub-byte packing: several small integers in one uint8 byte.

torch stores ``quint4x2`` two values per byte and ``quint2x4`` four values per byte.
Within a byte, element ``i`` of a group of ``k = 8 // bits`` consecutive elements
occupies bits ``[i*bits, (i+1)*bits)``: the first element sits in the low bits
(found by experiment: ``quantize_per_tensor(arange(2), 1, 0, quint4x2).int_repr()``
is ``[16]`` = ``0 | 1 << 4``). A trailing partial group is padded with zeros.

torch packs the *flattened* tensor (its ``int_repr()`` is 1-D); these functions pack
along one axis (the last by default), which is the same byte stream whenever that
axis's length is a multiple of ``k`` and keeps rows independent otherwise (what
per-row int4 kernels and sharding need). ``pack(values.reshape(-1), bits)`` gives
torch's flat layout exactly.

Pure ``jnp``, jittable, shapes static.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.core.packing import pack, unpack
  >>> packed = pack(jnp.array([[0, 1, 2]], jnp.uint8), bits=4)
  >>> packed.tolist()
  [[16, 2]]
  >>> unpack(packed, bits=4, size=3).tolist()
  [[0, 1, 2]]
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_SUPPORTED_BITS = (1, 2, 4)


def _check_bits(bits: int) -> int:
    if bits not in _SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r} must be one of {_SUPPORTED_BITS} "
                         "(a divisor of 8 below 8)")
    return 8 // bits


def packed_size(size: int, bits: int) -> int:
    """Number of bytes that hold ``size`` values of ``bits`` bits: ``ceil(size*bits/8)``."""
    per_byte = _check_bits(bits)
    return -(-int(size) // per_byte)


def pack(values: jax.Array, bits: int, axis: int = -1) -> jax.Array:
    """Packs ``8 // bits`` values per uint8 byte along ``axis`` (low bits first).

    Args:
      values: integer array; only the low ``bits`` bits of each value are kept, so
        signed values are stored in two's complement (unpack with ``signed=True``).
      bits: 1, 2 or 4.
      axis: the axis to pack along; its length ``n`` becomes ``ceil(n * bits / 8)``.

    Returns:
      uint8 array, ``values.shape`` with ``axis`` shortened; the last partial byte
      is zero-padded as torch does.

    Raises:
      ValueError: ``bits`` unsupported or ``values`` is 0-d.
      TypeError: ``values`` is not an integer array.
    """
    _check_bits(bits)
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.integer):
        raise TypeError(f"values must be an integer array; got {values.dtype}")
    if values.ndim == 0:
        raise ValueError("values must have at least one dimension to pack along")
    return _pack(values, bits, _normalize_axis(axis, values.ndim))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _pack(values: jax.Array, bits: int, axis: int) -> jax.Array:
    # One compiled program per shape, also for eager calls.
    per_byte = 8 // bits
    values = jnp.moveaxis(values, axis, -1)
    size = values.shape[-1]
    padded = packed_size(size, bits) * per_byte
    low_bits = (values.astype(jnp.int32) & ((1 << bits) - 1)).astype(jnp.uint8)
    if padded != size:
        pad = [(0, 0)] * (values.ndim - 1) + [(0, padded - size)]
        low_bits = jnp.pad(low_bits, pad)
    groups = low_bits.reshape(*low_bits.shape[:-1], padded // per_byte, per_byte)
    shifts = jnp.arange(per_byte, dtype=jnp.uint8) * jnp.uint8(bits)
    # The shifted fields do not overlap, so a sum is a bitwise or.
    packed = jnp.sum(groups << shifts, axis=-1, dtype=jnp.uint8)
    return jnp.moveaxis(packed, -1, axis)


def unpack(packed: jax.Array, bits: int, size: int, axis: int = -1,
           signed: bool = False) -> jax.Array:
    """Inverse of :func:`pack`: ``size`` values along ``axis``.

    Args:
      packed: uint8 array from :func:`pack`.
      bits: 1, 2 or 4.
      size: the unpacked length of ``axis`` (drops the zero padding).
      axis: the packed axis.
      signed: sign-extend each field (two's complement) and return int8; otherwise
        return uint8.

    Raises:
      TypeError: ``packed`` is not uint8.
      ValueError: ``size`` does not fit the packed length.
    """
    _check_bits(bits)
    packed = jnp.asarray(packed)
    if packed.dtype != jnp.uint8:
        raise TypeError(f"packed must be uint8; got {packed.dtype}")
    if packed.ndim == 0:
        raise ValueError("packed must have at least one dimension")
    axis = _normalize_axis(axis, packed.ndim)
    if packed_size(size, bits) != packed.shape[axis]:
        raise ValueError(f"size={size} needs {packed_size(size, bits)} bytes of {bits}-bit "
                         f"values but the packed axis has {packed.shape[axis]}")
    return _unpack(packed, bits, int(size), signed, axis)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _unpack(packed: jax.Array, bits: int, size: int, signed: bool, axis: int) -> jax.Array:
    per_byte = 8 // bits
    packed = jnp.moveaxis(packed, axis, -1)
    shifts = jnp.arange(per_byte, dtype=jnp.uint8) * jnp.uint8(bits)
    fields = (packed[..., None] >> shifts) & jnp.uint8((1 << bits) - 1)
    values = fields.reshape(*packed.shape[:-1], packed.shape[-1] * per_byte)[..., :size]
    if signed:
        # Shift the field's sign bit into the int8 sign bit, then shift back arithmetically.
        values = (values << jnp.uint8(8 - bits)).astype(jnp.int8) >> jnp.int8(8 - bits)
    return jnp.moveaxis(values, -1, axis)


def _normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an array with {ndim} dimensions")
    return axis % ndim
