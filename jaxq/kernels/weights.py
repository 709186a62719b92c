"""Quantized weights packed once, at convert time, for the quantized-matmul backends.

A :class:`PackedWeight` is a pytree: its arrays (``data``, ``scale``, ``zero_point``,
``col_sums``) are leaves, its :class:`WeightSpec` (shapes, bits, granularity, layout) is
static. ``data``'s layout is chosen once by :func:`pack_weight`; every backend can read
every layout through :func:`weight_values` (the XLA reference does), and fast backends
accept only the layouts they pack themselves.

Weight values, in the torch layout ``(out_features, in_features) = (N, K)``:

* 8-bit: int8 values ``q``; real weight ``(q - zero_point) * scale``.
* 4-bit: unsigned nibbles ``u`` in [0, 15] with a zero point per group; a signed int4
  weight in [-8, 7] is stored as ``u = q + 8`` with ``zero_point + 8``, which leaves
  ``(u - zero_point)`` and so every result unchanged.

Scales and zero points: per tensor (shape ``()``), per output channel ``(N,)``, or per
group of ``group_size`` consecutive input features ``(N, K // group_size)``.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxq.kernels import pack_weight
  >>> w = pack_weight(jnp.ones((3, 5), jnp.int8), jnp.full((3,), 0.1))
  >>> w.spec.out_features, w.spec.in_features, w.spec.granularity
  (3, 5, 'per_channel')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core import packing

__all__ = [
    "PackedWeight", "WeightLayout", "WeightSpec", "pack_weight", "register_weight_layout",
    "weight_layouts", "weight_values", "default_layout",
]

_GRANULARITIES = ("per_tensor", "per_channel", "per_group")


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """Static description of a packed weight (hashable: part of the jit cache key).

    Attributes:
      out_features: N.
      in_features: K.
      bits: 8 or 4.
      granularity: ``"per_tensor"``, ``"per_channel"`` or ``"per_group"``.
      group_size: K for per-tensor / per-channel; the group length for per-group.
      symmetric: every zero point is known to be 0 (the zero-point corrections are
        skipped statically).
      layout: name of the :class:`WeightLayout` of ``data``.
    """

    out_features: int
    in_features: int
    bits: int
    granularity: str
    group_size: int
    symmetric: bool
    layout: str

    @property
    def num_groups(self) -> int:
        return self.in_features // self.group_size


@jax.tree_util.register_pytree_node_class
class PackedWeight:
    """A quantized ``(N, K)`` weight in a backend layout, with its qparams.

    Attributes:
      data: the values in ``spec.layout`` (see :func:`weight_values` for their meaning).
      scale: float32, ``()``, ``(N,)`` or ``(N, K // group_size)``.
      zero_point: int32, same shape as ``scale``.
      col_sums: int32 ``(N,)``: ``sum_k q[n, k]`` of the stored values (used to remove
        the activation zero point); zeros for 4-bit weights.
      spec: the static :class:`WeightSpec`.
    """

    def __init__(self, data, scale, zero_point, col_sums, spec: WeightSpec):
        self.data = data
        self.scale = scale
        self.zero_point = zero_point
        self.col_sums = col_sums
        self.spec = spec

    def tree_flatten(self):
        return (self.data, self.scale, self.zero_point, self.col_sums), self.spec

    @classmethod
    def tree_unflatten(cls, spec, children):
        return cls(*children, spec=spec)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.spec.out_features, self.spec.in_features)

    def __repr__(self) -> str:
        s = self.spec
        return (f"PackedWeight(N={s.out_features}, K={s.in_features}, bits={s.bits}, "
                f"{s.granularity}{'' if s.granularity != 'per_group' else f'({s.group_size})'}"
                f", symmetric={s.symmetric}, layout={s.layout!r})")


@dataclasses.dataclass(frozen=True)
class WeightLayout:
    """How a backend stores weight values.

    Attributes:
      name: registry key (``WeightSpec.layout``).
      bits: the weight width the layout holds (8 or 4).
      pack: ``pack(values (N, K) int8, spec) -> data``; jnp, traceable.
      unpack: ``unpack(data, spec) -> values (N, K) int8``; jnp, traceable (this is how
        the XLA reference reads any layout).
    """

    name: str
    bits: int
    pack: Callable[[jax.Array, WeightSpec], jax.Array]
    unpack: Callable[[jax.Array, WeightSpec], jax.Array]


_LAYOUTS: dict[str, WeightLayout] = {}


def register_weight_layout(layout: WeightLayout) -> None:
    """Adds (or replaces) a weight layout; backends call this when they are imported."""
    if not isinstance(layout, WeightLayout):
        raise TypeError(f"layout must be a WeightLayout; got {type(layout).__name__}")
    _LAYOUTS[layout.name] = layout


def weight_layouts() -> dict[str, WeightLayout]:
    """The registered layouts by name."""
    return dict(_LAYOUTS)


# The portable layouts: plain (N, K) rows; 4-bit rows packed two per byte, low nibble first
# (jaxq.core.packing, torch's quint4x2 order).
register_weight_layout(WeightLayout(
    "nk", 8, pack=lambda values, spec: values.astype(jnp.int8),
    unpack=lambda data, spec: data))
register_weight_layout(WeightLayout(
    "nk4", 4, pack=lambda values, spec: packing.pack(values.astype(jnp.uint8), bits=4),
    unpack=lambda data, spec: packing.unpack(data, bits=4, size=spec.in_features
                                             ).astype(jnp.int8)))


def weight_values(weight: PackedWeight) -> jax.Array:
    """The stored values as int8 ``(N, K)`` (4-bit: the unsigned nibbles 0..15)."""
    return _layout(weight.spec.layout).unpack(weight.data, weight.spec)


def _layout(name: str) -> WeightLayout:
    if name not in _LAYOUTS:
        raise ValueError(f"layout={name!r} is not a registered weight layout; "
                         f"registered: {sorted(_LAYOUTS)}")
    return _LAYOUTS[name]


_DEFAULT_LAYOUT_HOOKS: list[Callable[[WeightSpec], str | None]] = []


def add_default_layout_hook(hook: Callable[[WeightSpec], str | None]) -> None:
    """Lets a backend claim the default layout for weights it runs (first claim wins)."""
    _DEFAULT_LAYOUT_HOOKS.append(hook)


def default_layout(spec: WeightSpec) -> str:
    """The layout :func:`pack_weight` picks when ``layout=None``.

    A backend that is available on this machine and runs weights like ``spec`` claims its
    own layout (the native CPU backend does on CPUs with AVX2/AVX512-VNNI); otherwise the
    portable ``"nk"`` / ``"nk4"``.
    """
    for hook in _DEFAULT_LAYOUT_HOOKS:
        name = hook(spec)
        if name is not None:
            return name
    return "nk" if spec.bits == 8 else "nk4"


def _is_concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _param(value, name: str, dtype, n: int, k: int, group_size: int | None):
    """Validates a scale / zero point and returns (array, granularity, group_size)."""
    array = jnp.asarray(value)
    if array.ndim == 0 or array.shape == (1,):
        return array.reshape(()).astype(dtype), "per_tensor", k
    if array.shape == (n,) or array.shape == (n, 1):
        return array.reshape(n).astype(dtype), "per_channel", k
    if array.ndim == 2 and array.shape[0] == n:
        groups = array.shape[1]
        if k % groups:
            raise ValueError(f"{name} has shape {array.shape}: {groups} groups do not divide "
                             f"in_features={k}")
        size = k // groups
        if group_size is not None and group_size != size:
            raise ValueError(f"group_size={group_size} disagrees with {name} shape "
                             f"{array.shape} (K={k} gives group_size {size})")
        return array.astype(dtype), "per_group", size
    raise ValueError(f"{name} must have shape (), (1,), ({n},) or ({n}, K // group_size); "
                     f"got {array.shape}")


def pack_weight(weight: Any, scale: Any, zero_point: Any = None, *, bits: int = 8,
                group_size: int | None = None, layout: str | None = None) -> PackedWeight:
    """Packs a quantized weight for :func:`jaxq.kernels.quantized_matmul`.

    Call it once, when a model is converted; the result is a pytree that jitted code
    takes as an argument.

    Args:
      weight: integer ``(N, K)`` = ``(out_features, in_features)`` (torch's layout; a Flax
        kernel ``(K, N)`` is ``kernel.T``). 8-bit: int8 values in [-128, 127] (uint8
        values are accepted and shifted by -128 with the zero point). 4-bit: values in
        [-8, 7] (int8) or [0, 15] (uint8).
      scale: float ``()``, ``(N,)`` or ``(N, K // group_size)``.
      zero_point: integer, same shape as ``scale``; None means 0.
      bits: 8 or 4.
      group_size: optional check of the group size implied by ``scale``'s shape.
      layout: a registered layout name; None picks :func:`default_layout`.

    Returns:
      A :class:`PackedWeight`.

    Raises:
      TypeError: non-integer weight, non-float scale.
      ValueError: bad shapes, values out of range, non-positive scales, an unknown layout.

    Example:
      >>> import jax.numpy as jnp
      >>> q = jnp.array([[1, -2, 3], [4, 5, -6]], jnp.int8)
      >>> w = pack_weight(q, jnp.float32(0.05))
      >>> weight_values(w).tolist()
      [[1, -2, 3], [4, 5, -6]]
    """
    weight = jnp.asarray(weight)
    if bits not in (8, 4):
        raise ValueError(f"bits={bits!r} must be 8 or 4")
    if not jnp.issubdtype(weight.dtype, jnp.integer):
        raise TypeError(f"weight must be an integer array; got {weight.dtype}")
    if weight.ndim != 2 or 0 in weight.shape:
        raise ValueError(f"weight must have shape (out_features, in_features) with both > 0; "
                         f"got {weight.shape}")
    n, k = weight.shape
    scale_arr = jnp.asarray(scale)
    if not jnp.issubdtype(scale_arr.dtype, jnp.floating):
        raise TypeError(f"scale must be a float array; got {scale_arr.dtype}")
    scale_arr, granularity, size = _param(scale_arr, "scale", jnp.float32, n, k, group_size)
    if zero_point is None:
        zp_arr = jnp.zeros(scale_arr.shape, jnp.int32)
        symmetric = True
    else:
        zp_arr = jnp.asarray(zero_point)
        if not jnp.issubdtype(zp_arr.dtype, jnp.integer):
            raise TypeError(f"zero_point must be an integer array; got {zp_arr.dtype}")
        zp_arr, zp_gran, _ = _param(zp_arr, "zero_point", jnp.int32, n, k, size)
        if zp_gran != granularity:
            raise ValueError(f"zero_point is {zp_gran} but scale is {granularity}")
        symmetric = _is_concrete(zp_arr) and not np.any(np.asarray(zp_arr))
    if _is_concrete(scale_arr):
        values = np.asarray(scale_arr)
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError("scale must be finite and positive")
    values = weight.astype(jnp.int32)
    signed_input = jnp.issubdtype(weight.dtype, jnp.signedinteger)
    if bits == 8:
        lo, hi = (-128, 127) if signed_input else (0, 255)
        if not signed_input:  # uint8 storage -> int8 with the zero point moved along.
            values, zp_arr = values - 128, zp_arr - 128
            symmetric = False
    else:
        lo, hi = (-8, 7) if signed_input else (0, 15)
        if signed_input:  # signed int4 -> unsigned nibbles with the zero point moved along.
            values, zp_arr = values + 8, zp_arr + 8
            symmetric = False
    if _is_concrete(weight):
        w_np = np.asarray(weight)
        if w_np.min() < lo or w_np.max() > hi:
            raise ValueError(f"{bits}-bit {weight.dtype} weight values must lie in [{lo}, {hi}]; "
                             f"got [{w_np.min()}, {w_np.max()}]")
    if bits == 8 and _is_concrete(zp_arr):
        z = np.asarray(zp_arr)
        if z.size and (z.min() < -128 or z.max() > 127):
            raise ValueError(f"zero_point must lie in [-128, 127] for int8 weights; got "
                             f"[{z.min()}, {z.max()}]")
    spec = WeightSpec(out_features=n, in_features=k, bits=bits, granularity=granularity,
                      group_size=size, symmetric=bool(symmetric), layout="")
    name = default_layout(spec) if layout is None else layout
    chosen = _layout(name)
    if chosen.bits != bits:
        raise ValueError(f"layout={name!r} holds {chosen.bits}-bit weights, not {bits}-bit")
    spec = dataclasses.replace(spec, layout=name)
    values8 = values.astype(jnp.int8)
    col_sums = (jnp.sum(values, axis=1, dtype=jnp.int32) if bits == 8
                else jnp.zeros((n,), jnp.int32))
    return PackedWeight(chosen.pack(values8, spec), scale_arr, zp_arr.astype(jnp.int32),
                        col_sums, spec)
