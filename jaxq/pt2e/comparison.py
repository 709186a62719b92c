"""Accuracy metrics between a reference and an actual model's logged node outputs.

The JAX analogue of the comparison half of ``torch.ao.quantization.pt2e._numeric_debugger``
(``QuantizationComparisonResult``, ``NodeAccuracySummary``, ``compare_results``) and of the
metric functions of ``torch.ao.ns.fx.utils`` (``compute_sqnr``,
``compute_normalized_l2_error``, ``compute_cosine_similarity``).

As in torch, every metric takes ``(actual, ref)`` in that order (SQNR's signal power is the
*actual* output's), dequantizes :class:`jaxq.QTensor` values first, computes in float32,
and maps over (nested) lists, tuples and dicts, returning the same structure (None for
non-array leaves).

Example:
  >>> import jax.numpy as jnp
  >>> ref = {7: ("fc", {}, [jnp.array([1.0, 2.0, 3.0])])}
  >>> actual = {7: ("fc", {}, [jnp.array([1.0, 2.0, 3.5])])}
  >>> summary = compare_results(ref, actual)[7]
  >>> round(float(summary.results[0].mse_loss), 4), round(float(summary.results[0].sqnr), 2)
  (0.0833, 18.39)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.core.qtensor import QTensor

__all__ = [
    "compute_sqnr", "compute_mse_loss", "compute_normalized_l2_error",
    "compute_cosine_similarity", "QuantizationComparisonResult", "NodeAccuracySummary",
    "compare_results",
]

_ARRAY_TYPES = (jax.Array, np.ndarray, QTensor)


def _as_float32(x: Any) -> jax.Array:
    if isinstance(x, QTensor):
        x = x.dequantize()
    return jnp.asarray(x).astype(jnp.float32)


def _map_pairs(metric: Callable[[jax.Array, jax.Array], jax.Array], x: Any, y: Any) -> Any:
    """``metric`` on float32 (dequantized) arrays, mapped over matching lists / dicts."""
    if isinstance(x, _ARRAY_TYPES) and isinstance(y, _ARRAY_TYPES):
        return metric(_as_float32(x), _as_float32(y))
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return type(x)(_map_pairs(metric, a, b) for a, b in zip(x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return {k: _map_pairs(metric, v, y[k]) for k, v in x.items()}
    return None


@jax.jit
def _sqnr(x: jax.Array, y: jax.Array) -> jax.Array:
    # torch.norm(x) / torch.norm(x - y): both Frobenius norms over all elements.
    signal = jnp.sqrt(jnp.sum(jnp.square(x)))
    noise = jnp.sqrt(jnp.sum(jnp.square(x - y)))
    return 20 * jnp.log10(signal / noise)


@jax.jit
def _mse(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(x - y))


@jax.jit
def _normalized_l2(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x - y)) / jnp.sum(jnp.square(x)))


@jax.jit
def _cosine(x: jax.Array, y: jax.Array) -> jax.Array:
    # torch.nn.functional.cosine_similarity(x.reshape(1, -1), y.reshape(1, -1)), eps=1e-8:
    # each row is divided by max(its norm, eps) before the dot product; shape (1,).
    x = x.reshape(1, -1)
    y = y.reshape(1, -1)
    eps = jnp.float32(1e-8)
    x_norm = jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), eps)
    y_norm = jnp.maximum(jnp.linalg.norm(y, axis=1, keepdims=True), eps)
    return jnp.sum((x / x_norm) * (y / y_norm), axis=1)


def compute_sqnr(x: Any, y: Any) -> Any:
    """Signal-to-quantization-noise ratio in dB: ``20 * log10(||x|| / ||x - y||)``.

    torch's ``compute_sqnr``: ``x`` is the signal (the numeric debugger passes the actual
    output), norms over all elements; ``inf`` when ``x == y``.

    Args:
      x, y: arrays / QTensors of equal shape (any dtype; compared as float32), or
        matching lists / tuples / dicts of them.

    Returns:
      A float32 scalar array (or the same container of them).

    Example:
      >>> import jax.numpy as jnp
      >>> float(compute_sqnr(jnp.array([3.0, 4.0]), jnp.array([3.0, 4.5])))  # doctest: +ELLIPSIS
      20.0...
    """
    return _map_pairs(_sqnr, x, y)


def compute_mse_loss(x: Any, y: Any) -> Any:
    """``torch.nn.functional.mse_loss(x, y)``: the mean of ``(x - y) ** 2``, float32.

    Example:
      >>> import jax.numpy as jnp
      >>> float(compute_mse_loss(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
      2.0
    """
    return _map_pairs(_mse, x, y)


def compute_normalized_l2_error(x: Any, y: Any) -> Any:
    """torch's ``compute_normalized_l2_error``: ``sqrt(sum((x - y) ** 2) / sum(x ** 2))``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(compute_normalized_l2_error(jnp.array([3.0, 4.0]), jnp.array([3.0, 4.5]))), 6)
      0.1
    """
    return _map_pairs(_normalized_l2, x, y)


def compute_cosine_similarity(x: Any, y: Any) -> Any:
    """torch's ``compute_cosine_similarity``: cosine of the flattened arrays, shape ``(1,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> compute_cosine_similarity(jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0])).tolist()
      [0.0]
    """
    return _map_pairs(_cosine, x, y)


def _structure_shapes_equal(x: Any, y: Any) -> bool:
    if isinstance(x, _ARRAY_TYPES) and isinstance(y, _ARRAY_TYPES):
        return tuple(x.shape) == tuple(y.shape)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_structure_shapes_equal(a, b) for a, b in zip(x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_structure_shapes_equal(x[k], y[k]) for k in x)
    return type(x) is type(y) and x == y


def _describe(value: Any) -> str:
    if isinstance(value, _ARRAY_TYPES):
        return f"{type(value).__name__}(shape={tuple(value.shape)}, dtype={value.dtype})"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in value.items()) + "}"
    return repr(value)


@dataclasses.dataclass(frozen=True)
class QuantizationComparisonResult:
    """One logged output of a node in the actual and the reference model.

    Attributes:
      actual: the actual (e.g. quantized) model's output: an array, a
        :class:`jaxq.QTensor`, or a list / tuple / dict of them.
      ref: the reference (float) model's output, same structure and shapes.

    Raises:
      ValueError: a value is not an array / QTensor / list / tuple / dict, or the
        structures or shapes differ.
    """

    actual: Any
    ref: Any

    @property
    def mse_loss(self) -> Any:
        """``mse_loss(actual, ref)``, float32 (same structure as the values)."""
        return self.loss(compute_mse_loss)

    @property
    def sqnr(self) -> Any:
        """``compute_sqnr(actual, ref)`` in dB, float32."""
        return self.loss(compute_sqnr)

    @property
    def normalized_l2_error(self) -> Any:
        """``compute_normalized_l2_error(actual, ref)`` (a jaxq addition; torch.ao.ns's)."""
        return self.loss(compute_normalized_l2_error)

    @property
    def cosine_similarity(self) -> Any:
        """``compute_cosine_similarity(actual, ref)``, shape ``(1,)`` (a jaxq addition)."""
        return self.loss(compute_cosine_similarity)

    def loss(self, loss_function: Callable[[Any, Any], Any]) -> Any:
        """``loss_function(actual, ref)`` on float32 (dequantized) arrays, per leaf."""
        return _map_pairs(loss_function, self.actual, self.ref)

    def __post_init__(self) -> None:
        for name in ("actual", "ref"):
            value = getattr(self, name)
            if not isinstance(value, (*_ARRAY_TYPES, list, tuple, dict)):
                raise ValueError(f"`self.{name}` value must be an array, QTensor, list, "
                                 f"tuple or dict; got {type(value).__name__}")
        if not _structure_shapes_equal(self.ref, self.actual):
            raise ValueError("Cannot compare tensors with different shapes: "
                             f"ref={_describe(self.ref)} vs actual={_describe(self.actual)}")

    def __repr__(self) -> str:
        # The arrays themselves are left out: they can be large.
        return f"QuantizationComparisonResult(mse_loss={self.mse_loss}, sqnr={self.sqnr})"


@dataclasses.dataclass(frozen=True)
class NodeAccuracySummary:
    """Comparison of one debug handle's outputs (torch's ``NodeAccuracySummary``).

    Attributes:
      handle: the numeric debug handle.
      actual_node_name, ref_node_name: names of the logged nodes.
      actual_module_stack, ref_module_stack: the innermost module path of each node.
      results: one :class:`QuantizationComparisonResult` per recorded call.
    """

    handle: int
    actual_node_name: str
    actual_module_stack: str
    ref_node_name: str
    ref_module_stack: str
    results: Sequence[QuantizationComparisonResult]


def _module_stack_to_str(module_stack: Any) -> str:
    """``{.., "fc": ("fc", type)}`` -> ``"fc"`` (the innermost module's path)."""
    if not isinstance(module_stack, dict):
        return str(module_stack)
    values = list(module_stack.values())
    if values:
        return str(values[-1][0])
    return str(module_stack)


def _check_results(results: Any, argument: str) -> None:
    if not isinstance(results, dict):
        raise TypeError(f"{argument} must be the dict returned by "
                        f"extract_results_from_loggers; got {type(results).__name__}")
    for handle, value in results.items():
        if not (isinstance(value, tuple) and len(value) == 3
                and isinstance(value[2], (list, tuple))):
            raise TypeError(f"{argument}[{handle!r}] must be a (node_name, nn_module_stack, "
                            f"list of outputs) tuple; got {type(value).__name__}")


def compare_results(ref_results: dict[int, tuple[str | None, Any, list]],
                    actual_results: dict[int, tuple[str | None, Any, list]]
                    ) -> dict[int, NodeAccuracySummary]:
    """Per-handle accuracy of ``actual_results`` against ``ref_results``.

    Handles of ``ref_results`` missing from ``actual_results`` are skipped, as in torch
    (a node a transform removed has nothing to compare).

    Args:
      ref_results: ``extract_results_from_loggers`` of the reference (float) model.
      actual_results: ``extract_results_from_loggers`` of the actual (quantized) model.

    Returns:
      ``{handle: NodeAccuracySummary}`` for every handle in both, in ``ref_results`` order.

    Raises:
      TypeError: an argument is not such a dict.
      ValueError: the two share no handle while ``ref_results`` is not empty (the models
        were not derived from the same handled graph); a handle recorded a different
        number of calls in each (torch would silently compare only the first ones); or
        the outputs of a handle differ in shape (the message names the handle and nodes).

    Example:
      >>> import jax.numpy as jnp
      >>> ref = {1: ("relu", {"": ("", "M")}, [jnp.ones(4)])}
      >>> compare_results(ref, ref)[1].results[0].sqnr.item()
      inf
    """
    _check_results(ref_results, "ref_results")
    _check_results(actual_results, "actual_results")
    if ref_results and not set(ref_results) & set(actual_results):
        raise ValueError(
            "ref_results and actual_results share no numeric debug handle (ref has "
            f"{sorted(ref_results)[:10]}, actual has {sorted(actual_results)[:10]}); both "
            "models must come from the same captured graph after "
            "generate_numeric_debug_handle")
    comparisons: dict[int, NodeAccuracySummary] = {}
    for handle, (ref_name, ref_stack, ref_stats) in ref_results.items():
        if handle not in actual_results:
            continue
        actual_name, actual_stack, actual_stats = actual_results[handle]
        if len(actual_stats) != len(ref_stats):
            raise ValueError(
                f"For handle={handle} from ref node {ref_name} and actual node "
                f"{actual_name}: ref recorded {len(ref_stats)} outputs, actual "
                f"{len(actual_stats)}; run both models on the same inputs")
        try:
            results = [QuantizationComparisonResult(actual=a, ref=b)
                       for a, b in zip(actual_stats, ref_stats)]
        except ValueError as error:
            raise ValueError(f"For handle={handle} from ref node {ref_name} and actual "
                             f"node {actual_name}: {error}") from error
        comparisons[handle] = NodeAccuracySummary(
            handle=handle,
            actual_node_name=actual_name or "",
            actual_module_stack=_module_stack_to_str(actual_stack),
            ref_node_name=ref_name or "",
            ref_module_stack=_module_stack_to_str(ref_stack),
            results=results,
        )
    return comparisons
