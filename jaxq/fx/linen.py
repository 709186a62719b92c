"""Capturing a Flax **linen** model (``module.apply(variables, ...)``) into a jaxq graph.

:func:`capture_linen` traces ``module.apply(variables, *example_inputs)`` like
:func:`jaxq.fx.graph.capture` traces an NNX model, with one difference: every call of a
linen leaf layer (``nn.Dense``, ``nn.Conv``, ``nn.BatchNorm``, ``nn.LayerNorm``,
``nn.Embed``) becomes one ``call_module`` node that calls an **NNX equivalent** built
from the layer's variables (``nnx.Linear``, ``nnx.Conv``, ``nnx.BatchNorm``,
``nnx.LayerNorm``, ``nnx.Embed``, same arithmetic). The returned GraphModule's root is an
NNX container holding those modules at the linen paths (``"Dense_0"``,
``"block.head"``) plus the variables the rest of the code reads, so the whole graph-mode
workflow applies unchanged: pass the result to :func:`jaxq.quantize_fx.prepare_fx` /
:func:`~jaxq.quantize_fx.prepare_qat_fx` / :func:`~jaxq.quantize_fx.fuse_fx` in place of
the model, with QConfigMappings written with NNX types and linen module paths.

Limits: BatchNorm must use running averages (inference mode; QAT of a linen model's
BatchNorms is not supported); the graph runs only on inputs shaped like
``example_inputs`` (an NNX model's graph re-specializes to other shapes); functions
get the root as their enclosing module (no per-linen-module scopes); other linen layers
are traced through into primitives.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import flax.linen as nn
  >>> class MLP(nn.Module):
  ...     @nn.compact
  ...     def __call__(self, x):
  ...         return nn.Dense(2, name="head")(jax.nn.relu(nn.Dense(8)(x)))
  >>> x = jnp.ones((4, 3))
  >>> variables = MLP().init(jax.random.key(0), x)
  >>> gm = capture_linen(MLP(), variables, (x,))
  >>> [n.module_path for n in gm.graph.nodes if n.op == "call_module"]
  ['Dense_0', 'head']
  >>> bool(jnp.allclose(gm(x), MLP().apply(variables, x)))
  True
"""

from __future__ import annotations

import contextlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.fx.graph import GraphModule
from jaxq.fx import tracing

__all__ = ["capture_linen", "linen_to_nnx"]


def _value(variables: dict, collection: str, path: tuple, name: str) -> Any:
    node = variables.get(collection, {})
    for part in path:
        node = node[part]
    return node[name]


def _set(variable: Any, value: Any) -> None:
    variable.set_value(jnp.asarray(value))


def _dense(m: nn.Dense, v: dict, path: tuple) -> nnx.Linear:
    kernel = _value(v, "params", path, "kernel")
    out = nnx.Linear(kernel.shape[0], m.features, use_bias=m.use_bias, dtype=m.dtype,
                     param_dtype=m.param_dtype, precision=m.precision, rngs=nnx.Rngs(0))
    _set(out.kernel, kernel)
    if m.use_bias:
        _set(out.bias, _value(v, "params", path, "bias"))
    return out


def _conv(m: nn.Conv, v: dict, path: tuple) -> nnx.Conv:
    kernel = _value(v, "params", path, "kernel")
    if m.mask is not None:
        raise NotImplementedError("capture_linen: nn.Conv with a mask is not supported")
    out = nnx.Conv(kernel.shape[-2] * m.feature_group_count, m.features,
                   tuple(m.kernel_size), strides=m.strides, padding=m.padding,
                   input_dilation=m.input_dilation, kernel_dilation=m.kernel_dilation,
                   feature_group_count=m.feature_group_count, use_bias=m.use_bias,
                   dtype=m.dtype, param_dtype=m.param_dtype, precision=m.precision,
                   rngs=nnx.Rngs(0))
    _set(out.kernel, kernel)
    if m.use_bias:
        _set(out.bias, _value(v, "params", path, "bias"))
    return out


def _batch_norm(m: nn.BatchNorm, v: dict, path: tuple, kwargs: dict) -> nnx.BatchNorm:
    use_running_average = nn.merge_param("use_running_average", m.use_running_average,
                                         kwargs.get("use_running_average"))
    if not use_running_average:
        raise NotImplementedError("capture_linen: nn.BatchNorm must use running averages "
                                  "(use_running_average=True)")
    mean = _value(v, "batch_stats", path, "mean")
    out = nnx.BatchNorm(mean.shape[-1], use_running_average=True, axis=m.axis,
                        momentum=m.momentum, epsilon=m.epsilon, dtype=m.dtype,
                        param_dtype=m.param_dtype, use_bias=m.use_bias,
                        use_scale=m.use_scale, use_fast_variance=m.use_fast_variance,
                        rngs=nnx.Rngs(0))
    _set(out.mean, mean)
    _set(out.var, _value(v, "batch_stats", path, "var"))
    if m.use_scale:
        _set(out.scale, _value(v, "params", path, "scale"))
    if m.use_bias:
        _set(out.bias, _value(v, "params", path, "bias"))
    return out


def _layer_norm(m: nn.LayerNorm, v: dict, path: tuple, num_features: int) -> nnx.LayerNorm:
    out = nnx.LayerNorm(num_features, epsilon=m.epsilon, dtype=m.dtype,
                        param_dtype=m.param_dtype, use_bias=m.use_bias,
                        use_scale=m.use_scale, reduction_axes=m.reduction_axes,
                        feature_axes=m.feature_axes,
                        use_fast_variance=m.use_fast_variance, rngs=nnx.Rngs(0))
    if m.use_scale:
        _set(out.scale, _value(v, "params", path, "scale"))
    if m.use_bias:
        _set(out.bias, _value(v, "params", path, "bias"))
    return out


def _embed(m: nn.Embed, v: dict, path: tuple) -> nnx.Embed:
    table = _value(v, "params", path, "embedding")
    out = nnx.Embed(m.num_embeddings, m.features, dtype=m.dtype,
                    param_dtype=m.param_dtype, rngs=nnx.Rngs(0))
    _set(out.embedding, table)
    return out


def linen_to_nnx(module: nn.Module, variables: dict, path: tuple = (), args: tuple = (),
                 kwargs: dict | None = None) -> nnx.Module:
    """The NNX equivalent of a linen leaf layer with the variables at ``path``.

    Raises:
      TypeError: ``module`` is not one of the supported layers.
    """
    kwargs = kwargs or {}
    if type(module) is nn.Dense:
        return _dense(module, variables, path)
    if type(module) is nn.Conv:
        return _conv(module, variables, path)
    if type(module) is nn.BatchNorm:
        return _batch_norm(module, variables, path, kwargs)
    if type(module) is nn.LayerNorm:
        num_features = int(np.shape(args[0])[-1]) if args else int(
            np.shape(_value(variables, "params", path, "scale"))[-1])
        return _layer_norm(module, variables, path, num_features)
    if type(module) is nn.Embed:
        return _embed(module, variables, path)
    raise TypeError(f"module={type(module).__name__} has no NNX equivalent in capture_linen; "
                    "supported: nn.Dense, nn.Conv, nn.BatchNorm, nn.LayerNorm, nn.Embed")


_LINEN_LEAVES = (nn.Dense, nn.Conv, nn.BatchNorm, nn.LayerNorm, nn.Embed)


class LinenGraphRoot(nnx.Module):
    """The NNX root of a captured linen model: the converted leaf layers at their linen
    paths (nested containers) and ``linen_variables``, the variables non-leaf code reads
    (keyed ``"collection/a/b/name"``)."""

    def __init__(self):
        self.linen_variables = nnx.Dict()


class _Container(nnx.Module):
    pass


def _place(root: nnx.Module, path: tuple, module: nnx.Module) -> None:
    parent = root
    for part in path[:-1]:
        child = vars(parent).get(part)
        if child is None:
            child = _Container()
            setattr(parent, part, child)
        parent = child
    setattr(parent, path[-1], module)


@contextlib.contextmanager
def _patched_linen(cap: Any, variables: dict, converted: dict):
    originals = [(cls, cls.__dict__.get("__call__")) for cls in _LINEN_LEAVES]

    def make(original):
        def __call__(self, *args, **kwargs):
            active = tracing._active()
            if active is not cap or cap.depth or self.scope is None:
                return original(self, *args, **kwargs)
            path = tuple(self.path)
            key = ".".join(path)
            if key not in converted:
                # Built eagerly: its initializers must not become part of the graph.
                with jax.ensure_compile_time_eval():
                    converted[key] = linen_to_nnx(self, variables, path, args, kwargs)
            module = converted[key]
            return cap.emit("call_module", type(module), key, None, type(module).__call__,
                            None, args, {}, module=module)
        return __call__

    try:
        for cls, original in originals:
            cls.__call__ = make(original if original is not None else cls.__call__)
        yield
    finally:
        for cls, original in originals:
            if original is not None:
                cls.__call__ = original


def capture_linen(module: nn.Module, variables: dict, example_inputs: tuple, *,
                  method: Any = None, leaf_functions: Any = ()) -> GraphModule:
    """Traces ``module.apply(variables, *example_inputs)`` into a :class:`GraphModule`.

    Args:
      module: the (unbound) linen module.
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      example_inputs: tuple of positional inputs.
      method: optional method passed to ``apply``.
      leaf_functions: extra functions kept as one node (on top of
        :func:`jaxq.fx.graph.default_leaf_functions`).

    Returns:
      A GraphModule whose root is a :class:`LinenGraphRoot` (see the module docstring).

    Raises:
      TypeError: bad argument types. NotImplementedError: unsupported layer settings.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a flax.linen.Module; got {type(module).__name__}")
    if not isinstance(variables, dict) and not hasattr(variables, "items"):
        raise TypeError(f"variables must be a dict of collections; got "
                        f"{type(variables).__name__}")
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of positional inputs; got "
                        f"{type(example_inputs).__name__}")
    variables = jax.tree.map(jnp.asarray, dict(variables))
    flat, _ = jax.tree_util.tree_flatten_with_path(variables)
    var_paths = [tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path)
                 for path, _ in flat]
    var_values = [value for _, value in flat]
    var_tree = jax.tree.structure(variables)
    input_leaves, in_tree = jax.tree.flatten(example_inputs)
    cap = tracing._CaptureState(lambda path, m: False)
    converted: dict[str, nnx.Module] = {}
    out_tree_box: list[Any] = []

    def traced(var_leaves, input_values):
        out = module.apply(jax.tree.unflatten(var_tree, var_leaves),
                           *jax.tree.unflatten(in_tree, input_values), method=method)
        out_leaves, out_tree = jax.tree.flatten(out)
        out_tree_box.append(out_tree)
        return out_leaves

    functions = frozenset(tracing.default_leaf_functions()) | frozenset(leaf_functions)
    with tracing._CAPTURE_LOCK, tracing._patched((), functions), \
            _patched_linen(cap, variables, converted):
        tracing._STATE.capture = cap
        try:
            closed = jax.make_jaxpr(traced)(
                [jax.ShapeDtypeStruct(np.shape(v), v.dtype) for v in var_values],
                [tracing._abstract(leaf) for leaf in input_leaves])
        finally:
            tracing._STATE.capture = None
    keys = ["/".join(str(p) for p in path) for path in var_paths]
    graph = tracing._graph_from_jaxpr(closed, len(var_values),
                                      [("linen_variables", key) for key in keys],
                                      len(input_leaves), in_tree, out_tree_box[-1], cap)
    root = LinenGraphRoot()
    for key, leaf in converted.items():
        _place(root, tuple(key.split(".")), leaf)
    by_key = dict(zip(keys, var_values))
    for node in graph.nodes:
        if node.op == "get_attr":
            key = node.meta["state_path"][1]
            variable_type = nnx.Param if key.startswith("params/") else nnx.Variable
            root.linen_variables[key] = variable_type(by_key[key])
            node.target = key
            node.module_path = ""
    graph.meta["input_signature"] = tracing._signature(input_leaves)
    graph.meta["num_captured"] = len(graph.nodes)
    graph.meta["captured_structure"] = tracing._structure(graph)
    graph.meta["stage"] = "captured"
    return GraphModule(root, graph)
