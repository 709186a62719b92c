"""Pallas plumbing shared by the GPU kernels: API shims and in-kernel numerics.

The kernels are written in the Pallas *Triton* style (whole-array refs, ``pl.program_id``,
masked ``load``/``store``) so the same code runs compiled on NVIDIA GPUs and in interpret
mode on CPU. This module keeps the few API spellings that moved between jax 0.10 and 0.11
in one place, and provides the two numerics helpers that the Triton lowering lacks:

* ``round_half_even``: ``lax.round`` has no Triton lowering; on GPU the helper emits
  ``cvt.rni.f32.f32`` (round to nearest, ties to even, as ``torch.round``); in interpret
  mode it is ``jnp.round``. (The ``(v + 1.5*2**23) - 1.5*2**23`` trick is not usable:
  XLA folds it back to ``v``.)
* ``ieee_divide``: Triton lowers a float32 ``/`` to ``div.full.f32`` (approximate, up to
  2 ulp) and XLA rewrites ``a / broadcast(b)`` into ``a * (1/b)``; torch divides with IEEE
  rounding. On GPU the helper emits ``div.rn.f32``; in interpret mode it uses
  :func:`jaxq.core.affine.exact_divide`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

try:  # jax >= 0.7: the Triton-specific API lives in pallas.triton.
    from jax.experimental.pallas import triton as pltriton
except ImportError:  # pragma: no cover - very old or Triton-less jax.
    pltriton = None

from jaxq.core.affine import exact_divide

__all__ = [
    "pl", "load", "store", "compiler_params", "resolve_interpret", "on_gpu",
    "round_half_even", "ieee_divide", "cdiv", "is_power_of_two",
]

def _resolve(name):
    for module in (pltriton, pl):
        fn = getattr(module, name, None) if module is not None else None
        if fn is not None:
            return fn
    raise ImportError(f"this jax ({jax.__version__}) has no Pallas '{name}' primitive")


load = _resolve("load")
store = _resolve("store")


def compiler_params(num_warps: int, num_stages: int):
    """Triton compiler parameters; passing them also pins the Triton backend.

    With ``jax_pallas_use_mosaic_gpu`` set (or a future default change) a ``pallas_call``
    without Triton parameters would be routed to Mosaic GPU, which cannot lower these
    kernels.
    """
    cls = getattr(pltriton, "CompilerParams", None) or getattr(pltriton, "TritonCompilerParams")
    return cls(num_warps=num_warps, num_stages=num_stages)


@functools.cache
def on_gpu() -> bool:
    """True when the default JAX backend is an NVIDIA/AMD GPU."""
    return jax.default_backend() == "gpu"


def resolve_interpret(interpret: bool | None) -> bool:
    """``None`` means: compile for the GPU when there is one, interpret otherwise."""
    if interpret is None:
        return not on_gpu()
    if not isinstance(interpret, bool):
        raise TypeError(f"interpret must be True, False or None; got {interpret!r}")
    return interpret


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def is_power_of_two(n: int) -> bool:
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0


def _ptx_unary(asm: str, v: jax.Array) -> jax.Array:
    [out] = pltriton.elementwise_inline_asm(
        asm, args=[v], constraints="=f,f", pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(v.shape, jnp.float32)])
    return out


def round_half_even(v: jax.Array, interpret: bool) -> jax.Array:
    """``jnp.round`` (ties to even) of float32 values inside a kernel; NaN stays NaN."""
    v = jnp.asarray(v, jnp.float32)
    if interpret:
        return jnp.round(v)
    return _ptx_unary("cvt.rni.f32.f32 $0, $1;", v)


def ieee_divide(numerator: jax.Array, denominator, interpret: bool) -> jax.Array:
    """Correctly rounded float32 ``numerator / denominator`` inside a kernel."""
    numerator = jnp.asarray(numerator, jnp.float32)
    denominator = jnp.asarray(denominator, jnp.float32)
    shape = jnp.broadcast_shapes(numerator.shape, denominator.shape)
    numerator = jnp.broadcast_to(numerator, shape)
    denominator = jnp.broadcast_to(denominator, shape)
    if interpret:
        return exact_divide(numerator, denominator)
    [quotient] = pltriton.elementwise_inline_asm(
        "div.rn.f32 $0, $1, $2;",
        args=[numerator, denominator],
        constraints="=f,f,f",  # .f32 registers
        pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(numerator.shape, jnp.float32)],
    )
    return quotient
