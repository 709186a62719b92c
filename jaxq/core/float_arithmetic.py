"""Float32 arithmetic with torch's roundings, written once for all of jaxq.

torch's x86 kernels round in ways plain XLA code does not reproduce:

* the compiled C++ uses fused multiply-add (one rounding) in places such as fbgemm's
  ``rint(fma(x, 1/s, zp))``, the fake-quant kernels and ``linspace``;
* elsewhere torch rounds a product before adding, but XLA:CPU contracts ``a * b + c``
  into an FMA inside one fusion (under ``jit`` only, so eager and jitted results
  differ), and an ``optimization_barrier`` does not stop it (barriers are removed
  before code generation);
* some steps run in float64 and are rounded to float32 once at the end.

The functions here give each of those results exactly, whatever XLA fuses:
:func:`separately_rounded` forces a product to be rounded on its own,
:func:`two_sum` / :func:`two_product` are the error-free transformations (Knuth,
Dekker), and :func:`fma_f32` is an exact single-rounding ``a * b + c``.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.core.float_arithmetic import fma_f32
  >>> float(fma_f32(jnp.float32(0.1), jnp.float32(10.0), jnp.float32(-1.0)))
  1.4901161193847656e-08
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["separately_rounded", "two_sum", "split", "two_product", "fma_f32"]


def separately_rounded(value: jax.Array) -> jax.Array:
    """``value`` itself, but with a second use that keeps LLVM from contracting it.

    Wrap a product in this where torch rounds it before the following addition: a
    select on the product is the one construct that reliably stops XLA:CPU from
    fusing ``a * b + c`` into an FMA.
    """
    return jnp.where(value == value, value, jnp.asarray(jnp.nan, value.dtype))


def two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e == a + b`` exactly (Knuth).

    Additions only, so contraction cannot change it.
    """
    total = a + b
    b_part = total - a
    return total, (a - (total - b_part)) + (b - b_part)


def split(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """float32 ``a = high + low`` with at most 12 significant bits in each half.

    By bit masking rather than Veltkamp's product, so it is FMA-safe.
    """
    bits = jax.lax.bitcast_convert_type(a.astype(jnp.float32), jnp.uint32)
    high = jax.lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFF000), jnp.float32)
    return high, a - high


def two_product(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(p, e)`` with ``p = fl(a * b)`` and ``p + e == a * b`` exactly (Dekker).

    The partial products are exact, so fusing them into FMAs changes nothing.
    """
    product = separately_rounded(a * b)
    a_high, a_low = split(a)
    b_high, b_low = split(b)
    error = ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low
    return product, error


def _round_to_odd_f32(s: jax.Array, err: jax.Array) -> jax.Array:
    """float32 of the exact value ``s + err`` (s = float64 round-to-nearest, err exact).

    Rounding to odd at 53 bits, then to nearest at 24 bits, equals one rounding to
    nearest at 24 bits (53 >= 24 + 2), so no double-rounding error is possible.
    """
    bits = jax.lax.bitcast_convert_type(s, jnp.int64)
    inexact = (err != 0) & jnp.isfinite(s)
    even = (bits & 1) == 0
    # Step one ulp toward the exact value: up in magnitude when err has s's sign.
    step = jnp.where((err > 0) == (s > 0), jnp.int64(1), jnp.int64(-1))
    bits = jnp.where(inexact & even, bits + step, bits)
    return jax.lax.bitcast_convert_type(bits, jnp.float64).astype(jnp.float32)


def fma_f32(a, b, c) -> jax.Array:
    """``a * b + c`` for float32 inputs with a single rounding to float32 (like FMA).

    Broadcasts its arguments. Exact for finite inputs whose product is finite: the
    float32 product is exact in float64, the float64 sum's error is recovered by
    :func:`two_sum`, and the final rounding goes through round-to-odd.
    """
    a, b, c = (jnp.asarray(v, jnp.float32) for v in (a, b, c))
    with jax.enable_x64(True):
        product = a.astype(jnp.float64) * b.astype(jnp.float64)
        total, error = two_sum(product, c.astype(jnp.float64))
        return _round_to_odd_f32(total, error)
