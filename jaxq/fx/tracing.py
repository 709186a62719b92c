"""Tracing an NNX model into a :class:`~jaxq.fx.graph.Graph` (see :mod:`jaxq.fx.graph`).

The ``jaxq_fx_call`` marker primitive, the temporary ``__call__`` / namespace patches that
make leaf modules and known functions one eqn each, and the jaxpr -> Graph conversion.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.fx.graph import Graph, GraphModule, Node, Ref, _target_name

__all__ = ["capture", "CaptureSpec", "default_leaf_types", "default_leaf_functions",
           "fx_call_p", "module_paths"]


# --------------------------------------------------------------------------------------
# The marker primitive
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class _CallRecord:
    """What one leaf-module / function call looked like at capture time."""

    op: str                       # "call_module" | "call_function"
    target: Any                   # module type or function
    module_path: str              # the module's path (call_module) or the calling scope
    scope_type: Any
    fn: Callable | None           # the original (unpatched) callable, functions only
    arg_tree: Any                 # treedef of (args, kwargs)
    static_leaves: tuple          # leaves of (args, kwargs); None at dynamic positions
    dynamic_positions: tuple      # indices of the dynamic (array) leaves
    out_tree: Any
    out_avals: tuple

    def __hash__(self) -> int:
        return id(self)


fx_call_p = jex.core.Primitive("jaxq_fx_call")
fx_call_p.multiple_results = True


@fx_call_p.def_abstract_eval
def _fx_call_abstract_eval(*args: Any, record: _CallRecord) -> tuple:
    del args
    return record.out_avals


def _fx_call_impl(*args: Any, record: _CallRecord) -> Any:
    raise NotImplementedError(
        "jaxq_fx_call eqns stand for leaf-module / function calls of a captured model; "
        "evaluate the graph with jaxq.fx.graph.interpret instead of the raw jaxpr")


fx_call_p.def_impl(_fx_call_impl)


# --------------------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------------------

def default_leaf_types() -> tuple[type, ...]:
    """Flax modules that are always one node (what configs can name)."""
    types = [nnx.Linear, nnx.Conv, nnx.ConvTranspose, nnx.BatchNorm, nnx.LayerNorm,
             nnx.GroupNorm, nnx.Embed, nnx.Dropout, nnx.InstanceNorm, nnx.PReLU,
             nnx.LinearGeneral, nnx.Einsum, nnx.RMSNorm, nnx.GRUCell, nnx.LSTMCell,
             nnx.SimpleCell, nnx.MultiHeadAttention]
    return tuple(t for t in types if isinstance(t, type))


def default_leaf_functions() -> tuple[Any, ...]:
    """JAX / Flax functions that are always one node."""
    fns = [jax.nn.relu, jax.nn.relu6, jax.nn.hard_tanh, jax.nn.elu, jax.nn.leaky_relu,
           jax.nn.hard_swish, jax.nn.hard_sigmoid, jax.nn.sigmoid, jax.nn.softmax,
           jax.nn.gelu, jax.nn.silu, jax.nn.identity, jax.nn.log_softmax, jax.nn.celu,
           jnp.tanh, jnp.mean, jnp.concatenate, jnp.clip, jnp.ravel, jnp.squeeze,
           jnp.stack, jnp.expand_dims, jnp.repeat, jnp.tile, jnp.swapaxes, jnp.matmul,
           jnp.transpose, jnp.pad, jax.lax.stop_gradient, jax.image.resize,
           nnx.max_pool, nnx.avg_pool]
    return tuple(fns)


# jit / custom_jvp eqn names of jax.nn activations, for calls that bypass the patched
# namespaces (``from jax.nn import relu``).
def _named_functions() -> dict[str, Any]:
    names = {}
    for fn in (jax.nn.relu, jax.nn.relu6, jax.nn.hard_tanh, jax.nn.elu, jax.nn.leaky_relu,
               jax.nn.hard_swish, jax.nn.hard_sigmoid, jax.nn.sigmoid, jax.nn.gelu,
               jax.nn.silu, jax.nn.celu, jax.nn.softplus):
        names.setdefault(_target_name(fn), fn)
    return names


_PRIMITIVE_FUNCTIONS = {"add": operator.add, "mul": operator.mul, "sub": operator.sub}
_PRIMITIVE_METHODS = {"reshape": "reshape", "squeeze": "squeeze", "transpose": "transpose",
                      "expand_dims": "expand_dims"}
_NAMESPACES = ("jax.nn", "jax.numpy", "jax.lax", "jax.image", "flax.nnx", "flax.linen")
_SCOPE_PREFIX = "jaxqfxscope"


def module_paths(model: nnx.Module) -> dict[int, tuple[str, Any]]:
    """``id(module) -> (dotted path, module)`` for every module of ``model`` (first path)."""
    paths: dict[int, tuple[str, Any]] = {}
    for path, value in nnx.iter_graph(model):
        if isinstance(value, nnx.Module) and id(value) not in paths:
            paths[id(value)] = (".".join(str(p) for p in path), value)
    return paths


class _CaptureState:
    def __init__(self, is_leaf: Callable[[str, Any], bool]):
        self.is_leaf = is_leaf
        self.paths: dict[int, str] = {}
        self.depth = 0
        self.scopes: list[tuple[str, Any]] = [("", None)]
        self.scope_ids: dict[str, int] = {}
        self.scope_table: list[tuple[str, Any]] = []

    def scope_token(self, path: str, module_type: Any) -> str:
        self.scope_table.append((path, module_type))
        return f"{_SCOPE_PREFIX}{len(self.scope_table) - 1}"

    def emit(self, op: str, target: Any, module_path: str, scope_type: Any,
             call: Callable, fn: Callable | None, args: tuple, kwargs: dict,
             module: Any = None) -> Any:
        leaves, arg_tree = jax.tree.flatten((args, kwargs))
        dynamic = tuple(i for i, leaf in enumerate(leaves)
                        if isinstance(leaf, (jax.Array, jax.core.Tracer)))
        static = tuple(None if i in dynamic else leaf for i, leaf in enumerate(leaves))

        if module is not None:
            # The module runs on a merged copy of its state passed through eval_shape, so
            # eval_shape's tracers never land in the traced model's variables (BatchNorm
            # in training mode writes its batch statistics).
            graphdef, module_state = nnx.split(module)
        else:
            graphdef, module_state = None, None

        def rebuilt(state, *dynamic_values):
            values = list(static)
            for position, value in zip(dynamic, dynamic_values):
                values[position] = value
            a, k = jax.tree.unflatten(arg_tree, values)
            if graphdef is not None:
                return call(nnx.merge(graphdef, state), *a, **k)
            return call(*a, **k)

        self.depth += 1
        try:
            out_shape = jax.eval_shape(rebuilt, module_state, *[leaves[i] for i in dynamic])
        finally:
            self.depth -= 1
        out_leaves, out_tree = jax.tree.flatten(out_shape)
        avals = tuple(jax.core.ShapedArray(s.shape, s.dtype) for s in out_leaves)
        record = _CallRecord(op, target, module_path, scope_type, fn, arg_tree, static,
                             dynamic, out_tree, avals)
        outs = fx_call_p.bind(*[leaves[i] for i in dynamic], record=record)
        return jax.tree.unflatten(out_tree, outs)


_STATE = threading.local()


def _active() -> _CaptureState | None:
    return getattr(_STATE, "capture", None)


def _module_wrapper(original: Callable) -> Callable:
    def __call__(self, *args, **kwargs):
        cap = _active()
        if cap is None or cap.depth or id(self) not in cap.paths:
            return original(self, *args, **kwargs)
        path = cap.paths[id(self)]
        if cap.is_leaf(path, self):
            scope_path, scope_type = cap.scopes[-1]
            del scope_path

            return cap.emit("call_module", type(self), path, scope_type, original, None,
                            args, kwargs, module=self)
        cap.scopes.append((path, type(self)))
        try:
            with jax.named_scope(cap.scope_token(path, type(self))):
                return original(self, *args, **kwargs)
        finally:
            cap.scopes.pop()

    __call__.__jaxq_fx_original__ = original
    return __call__


def _function_wrapper(function: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        cap = _active()
        if cap is None or cap.depth:
            return function(*args, **kwargs)
        leaves = jax.tree.leaves((args, kwargs))
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return function(*args, **kwargs)
        scope_path, scope_type = cap.scopes[-1]
        return cap.emit("call_function", function, scope_path, scope_type, function,
                        function, args, kwargs)

    wrapper.__jaxq_fx_original__ = function
    wrapper.__name__ = _target_name(function)
    return wrapper


@contextlib.contextmanager
def _patched(module_types: Iterable[type], functions: Iterable[Any]):
    import importlib
    originals: list[tuple[Any, str, bool, Any]] = []
    types = list(dict.fromkeys(module_types))
    resolved = {t: t.__call__ for t in types}
    try:
        for t in types:
            had = "__call__" in t.__dict__
            originals.append((t, "__call__", had, t.__dict__.get("__call__")))
            setattr(t, "__call__", _module_wrapper(resolved[t]))
        function_ids = {id(f): f for f in functions}
        for ns_name in _NAMESPACES:
            namespace = importlib.import_module(ns_name)
            for attr, value in list(vars(namespace).items()):
                if id(value) in function_ids and not attr.startswith("_"):
                    originals.append((namespace, attr, True, value))
                    setattr(namespace, attr, _function_wrapper(value))
        yield
    finally:
        for owner, attr, had, value in reversed(originals):
            if had:
                setattr(owner, attr, value)
            else:
                delattr(owner, attr)


_CAPTURE_LOCK = threading.Lock()


def _model_types(model: nnx.Module) -> list[type]:
    types: list[type] = []
    for _, value in nnx.iter_graph(model):
        if isinstance(value, nnx.Module) and type(value) not in types \
                and callable(getattr(type(value), "__call__", None)):
            types.append(type(value))
    return types


def capture(model: nnx.Module, example_inputs: tuple, *,
            leaf_types: Iterable[type] = (), leaf_functions: Iterable[Any] = (),
            leaf_module_names: Iterable[str] = ()) -> GraphModule:
    """Traces ``model(*example_inputs)`` into a :class:`GraphModule`.

    Args:
      model: an ``nnx.Module`` (not modified; the GraphModule's root is a clone).
      example_inputs: tuple of positional inputs (pytrees of arrays).
      leaf_types: module types to keep as one node, on top of
        :func:`default_leaf_types` (exact type match).
      leaf_functions: functions to keep as one node, on top of
        :func:`default_leaf_functions`.
      leaf_module_names: dotted module paths to keep as one node whatever their type
        (torch's ``non_traceable_module_names``).

    Returns:
      A :class:`GraphModule` whose ``root`` is a clone of ``model``.

    Raises:
      TypeError: ``model`` is not an ``nnx.Module`` or ``example_inputs`` is not a tuple.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module; got {type(model).__name__}")
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of positional inputs; got "
                        f"{type(example_inputs).__name__}")
    root = nnx.clone(model)
    graphdef, state = nnx.split(root)
    flat_state = [(path, var.replace(_abstract(var.get_value() if hasattr(var, "get_value")
                                               else var.value)))
                  if hasattr(var, "replace") else (path, _abstract(var))
                  for path, var in nnx.to_flat_state(state)]
    spec = CaptureSpec(graphdef, flat_state, tuple(_model_types(root)),
                       frozenset(default_leaf_types()) | frozenset(leaf_types),
                       frozenset(leaf_module_names),
                       frozenset(default_leaf_functions()) | frozenset(leaf_functions))
    input_leaves, in_tree = jax.tree.flatten(example_inputs)
    for leaf in input_leaves:
        if not isinstance(leaf, (jax.Array, np.ndarray, float, int, bool, np.generic)):
            raise TypeError(f"example_inputs may only hold arrays and numbers; got "
                            f"{type(leaf).__name__}")
    graph = _trace(spec, [_abstract(leaf) for leaf in input_leaves], in_tree)
    return GraphModule(root, graph)


@dataclasses.dataclass(eq=False)
class CaptureSpec:
    """What :func:`capture` needs to trace the float model again for other input shapes
    (the model's graphdef and abstract state: no parameter values are kept)."""

    graphdef: Any
    flat_state: list
    model_types: tuple
    leaf_types: frozenset
    leaf_names: frozenset
    leaf_functions: frozenset

    def __hash__(self) -> int:
        return id(self)


def _abstract(value: Any) -> Any:
    if isinstance(value, (jax.Array, np.ndarray, np.generic)) or hasattr(value, "shape"):
        return jax.ShapeDtypeStruct(np.shape(value), value.dtype)
    if isinstance(value, (bool, int, float)):
        return jax.ShapeDtypeStruct((), jnp.asarray(value).dtype)
    return value


def _signature(leaves: Sequence[Any]) -> tuple:
    return tuple((tuple(np.shape(leaf)), str(jnp.result_type(leaf))) for leaf in leaves)


def _trace(spec: CaptureSpec, input_leaves: list, in_tree: Any) -> Graph:
    """Traces the model described by ``spec`` on abstract inputs into a :class:`Graph`."""
    def is_leaf(path: str, module: Any) -> bool:
        # The root is always traced through, as torch.fx traces the root's forward.
        return path != "" and (type(module) in spec.leaf_types or path in spec.leaf_names)

    flat_state = spec.flat_state
    state_paths = [path for path, _ in flat_state]
    state_values = [var.get_value() if hasattr(var, "get_value") else var
                    for _, var in flat_state]
    cap = _CaptureState(is_leaf)
    out_tree_box: list[Any] = []

    def traced(state_leaves, input_values):
        merged_state = nnx.from_flat_state(
            [(p, v) for p, v in zip(state_paths, _replace_values(flat_state, state_leaves))])
        merged = nnx.merge(spec.graphdef, merged_state)
        cap.paths = {i: p for i, (p, _) in module_paths(merged).items()}
        out = merged(*jax.tree.unflatten(in_tree, input_values))
        out_leaves, out_tree = jax.tree.flatten(out)
        out_tree_box.append(out_tree)
        return out_leaves

    with _CAPTURE_LOCK, _patched(spec.model_types, spec.leaf_functions):
        _STATE.capture = cap
        try:
            closed = jax.make_jaxpr(traced)(state_values, list(input_leaves))
        finally:
            _STATE.capture = None
    graph = _graph_from_jaxpr(closed, len(state_values), state_paths, len(input_leaves),
                              in_tree, out_tree_box[-1], cap)
    graph.meta["capture_spec"] = spec
    graph.meta["input_signature"] = _signature(input_leaves)
    graph.meta["num_captured"] = len(graph.nodes)
    graph.meta["captured_structure"] = _structure(graph)
    return graph


def _structure(graph: Graph) -> tuple:
    return tuple((n.id, n.op, _target_name(n.target), n.module_path) for n in graph.nodes)


def _replace_values(flat_state: list, values: list) -> list:
    out = []
    for (_, var), value in zip(flat_state, values):
        if hasattr(var, "replace"):
            out.append(var.replace(value))
        else:
            out.append(value)
    return out


def _scope_of(eqn: Any, cap: _CaptureState) -> tuple[str, Any]:
    stack = str(eqn.source_info.name_stack)
    for part in reversed(stack.split("/")):
        if part.startswith(_SCOPE_PREFIX):
            suffix = part[len(_SCOPE_PREFIX):]
            if suffix.isdigit():
                return cap.scope_table[int(suffix)]
    return "", None


def _graph_from_jaxpr(closed: Any, num_state: int, state_paths: list, num_inputs: int,
                      in_tree: Any, out_tree: Any, cap: _CaptureState) -> Graph:
    jaxpr = closed.jaxpr
    env: dict[Any, Any] = {}
    for var, const in zip(jaxpr.constvars, closed.consts):
        env[var] = const
    nodes: list[Node] = []
    names: dict[str, int] = {}

    def unique(name: str) -> str:
        name = name.replace(".", "_") or "node"
        count = names.get(name, 0)
        names[name] = count + 1
        return name if count == 0 else f"{name}_{count}"

    def new_node(**fields: Any) -> Node:
        node = Node(id=len(nodes), **fields)
        nodes.append(node)
        return node

    used = set()
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if not isinstance(v, jex.core.Literal):
                used.add(v)
    for v in jaxpr.outvars:
        if not isinstance(v, jex.core.Literal):
            used.add(v)
    state_vars = jaxpr.invars[:num_state]
    input_vars = jaxpr.invars[num_state:]
    for i, var in enumerate(input_vars):
        node = new_node(op="placeholder", target=f"x_{i}", name=unique(f"x_{i}"),
                        meta={"avals": (_struct(var.aval),), "input_index": i})
        env[var] = Ref(node.id)
    for var, path in zip(state_vars, state_paths):
        if var not in used:
            continue
        dotted = ".".join(str(p) for p in path)
        node = new_node(op="get_attr", target=dotted, name=unique(dotted),
                        module_path=".".join(str(p) for p in path[:-1]),
                        meta={"avals": (_struct(var.aval),), "state_path": tuple(path)})
        env[var] = Ref(node.id)

    def read(v: Any) -> Any:
        if isinstance(v, jex.core.Literal):
            return v.val
        return env[v]

    counters: dict[tuple[str, Any], int] = {}
    named = _named_functions()

    def process(eqns: Any) -> None:
        for eqn in eqns:
            if eqn.primitive is not fx_call_p and _contains_call(eqn):
                _inline(eqn)
                continue
            args = tuple(read(v) for v in eqn.invars)
            avals = tuple(_struct(v.aval) for v in eqn.outvars)
            if eqn.primitive is fx_call_p:
                record: _CallRecord = eqn.params["record"]
                if record.op == "call_module":
                    scope = record.module_path.rpartition(".")[0]
                    name = record.module_path
                else:
                    scope = record.module_path
                    name = _target_name(record.target)
                key = (scope, record.target)
                index = counters.get(key, 0)
                counters[key] = index + 1
                node = new_node(op=record.op, target=record.target, name=unique(name),
                                args=args, module_path=record.module_path,
                                scope_type=record.scope_type, num_outputs=len(eqn.outvars),
                                call_index=index,
                                meta={"avals": avals, "call": record})
            else:
                scope_path, scope_type = _scope_of(eqn, cap)
                prim = eqn.primitive
                name_param = _eqn_name(eqn)
                if prim.name in _PRIMITIVE_FUNCTIONS:
                    op, target = "call_function", _PRIMITIVE_FUNCTIONS[prim.name]
                elif prim.name in _PRIMITIVE_METHODS:
                    op, target = "call_method", _PRIMITIVE_METHODS[prim.name]
                elif prim.name in ("custom_jvp_call", "jit", "pjit") and name_param in named:
                    op, target = "call_function", named[name_param]
                else:
                    op, target = "call_function", prim
                key = (scope_path, target)
                index = counters.get(key, 0)
                counters[key] = index + 1
                node = new_node(op=op, target=target,
                                name=unique(name_param if isinstance(name_param, str)
                                            else _target_name(target)),
                                args=args, module_path=scope_path, scope_type=scope_type,
                                num_outputs=len(eqn.outvars), call_index=index,
                                meta={"avals": avals, "primitive": prim,
                                      "params": dict(eqn.params), "ctx": eqn.ctx.manager,
                                      "effects": bool(eqn.effects)})
            for i, var in enumerate(eqn.outvars):
                env[var] = Ref(node.id, i)

    def _inline(eqn: Any) -> None:
        if eqn.primitive.name not in ("jit", "pjit"):
            raise NotImplementedError(
                f"a leaf module or function is called inside {eqn.primitive.name!r} "
                "(jax.lax control flow or an NNX lifted transform); jaxq.fx captures such "
                "calls only at the top level or inside jax.jit")
        inner = eqn.params["jaxpr"]
        for var, const in zip(inner.jaxpr.constvars, inner.consts):
            env[var] = const
        for inner_var, outer_var in zip(inner.jaxpr.invars, eqn.invars):
            env[inner_var] = read(outer_var)
        process(inner.jaxpr.eqns)
        for outer_var, inner_var in zip(eqn.outvars, inner.jaxpr.outvars):
            env[outer_var] = read(inner_var)

    process(jaxpr.eqns)
    outputs = tuple(read(v) for v in jaxpr.outvars)
    new_node(op="output", target="output", name="output", args=outputs,
             num_outputs=0, meta={})
    return Graph(_live(nodes), in_tree, out_tree)


def _live(nodes: list[Node]) -> list[Node]:
    """Drops dead code: primitive nodes whose outputs reach neither the output nor a module
    call (e.g. parameter initializers traced along with a model). Module calls, nodes with
    effects and placeholders always stay."""
    by_id = {n.id: n for n in nodes}
    live: set[int] = set()
    stack = [n.id for n in nodes
             if n.op in ("output", "call_module", "placeholder") or n.meta.get("effects")]
    while stack:
        node_id = stack.pop()
        if node_id in live:
            continue
        live.add(node_id)
        stack.extend(a.node_id for a in by_id[node_id].args if isinstance(a, Ref))
    return [n for n in nodes if n.id in live]


def _contains_call(eqn: Any) -> bool:
    """Whether a sub-jaxpr of ``eqn`` holds a ``jaxq_fx_call`` eqn."""
    for sub in jex.core.jaxprs_in_params(eqn.params):
        for inner in sub.eqns:
            if inner.primitive is fx_call_p or _contains_call(inner):
                return True
    return False


def _eqn_name(eqn: Any) -> str | None:
    """The ``name`` of a jit eqn; for a custom_jvp/vjp call, that of the jit it wraps."""
    name = eqn.params.get("name")
    if isinstance(name, str):
        return name
    inner = eqn.params.get("call_jaxpr") or eqn.params.get("fun_jaxpr")
    inner = getattr(inner, "jaxpr", inner)
    eqns = getattr(inner, "eqns", None)
    if eqns and len(eqns) == 1 and isinstance(eqns[0].params.get("name"), str):
        return eqns[0].params["name"]
    return None


def _struct(aval: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype)
