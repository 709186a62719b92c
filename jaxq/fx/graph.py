"""Graph capture for Flax NNX models: the JAX analogue of ``torch.fx`` symbolic tracing.

:func:`capture` traces an unmodified ``nnx.Module`` with :func:`jax.make_jaxpr` over
``(params-state, *example_inputs)`` and turns the jaxpr into a :class:`Graph` of
:class:`Node` s. While tracing:

* **leaf modules** (``nnx.Linear``, ``nnx.Conv``, ``nnx.BatchNorm``, ...: every type in
  ``leaf_types``) have their class ``__call__`` temporarily wrapped so each call becomes
  ONE eqn of the ``jaxq_fx_call`` primitive (its record holds the module path and type);
  the module body is not inlined;
* **known functions** (``jax.nn.relu``, ``jnp.mean``, ``nnx.max_pool``, ... : every
  function in ``leaf_functions``) are temporarily replaced in their public namespaces
  (``jax.nn``, ``jax.numpy``, ``jax.lax``, ``jax.image``, ``flax.nnx``) by wrappers that
  also emit one ``jaxq_fx_call`` eqn; a jitted / custom-jvp call whose name is a known
  ``jax.nn`` activation (``from jax.nn import relu`` escapes the namespace patch) is
  recognised by name;
* every other jaxpr eqn (``add``, ``mul``, ``reshape``, ``dot_general``, ...) is a node of
  its own; ``add``/``mul``/``sub`` get ``operator.add``/``operator.mul``/``operator.sub``
  as target and ``reshape``/``squeeze``/``transpose``/``expand_dims`` are ``call_method``
  nodes named like the ``jax.Array`` method, matching how :mod:`jaxq.backend_config`
  spells patterns;
* every non-leaf module ``__call__`` opens a ``jax.named_scope`` so each node knows the
  module whose code produced it (``Node.module_path`` / ``Node.scope_type``), which the
  QConfigMapping's precedence rules need.

Graph API (stable; later changes are additive only):

* ``Graph.nodes``: list of :class:`Node` in topological (execution) order.
* :class:`Node` fields: ``id`` (stable int; prepare/convert keep the id of a float node
  when they replace it, inserted nodes get fresh ids), ``op`` (``"placeholder"``,
  ``"get_attr"``, ``"call_module"``, ``"call_function"``, ``"call_method"``,
  ``"output"``), ``target`` (module type / JAX function / method name / jax primitive),
  ``name`` (unique readable name), ``module_path`` (for ``call_module`` the dotted path of
  the module inside the root; otherwise the path of the enclosing module, ``""`` = root),
  ``scope_type`` (type of that enclosing module), ``args`` (a tuple whose items are
  :class:`Ref` s to earlier node outputs or Python / array constants), ``num_outputs``,
  ``meta`` (dict: ``"avals"``: output ``jax.ShapeDtypeStruct`` s; ``"call"``: how a
  ``jaxq_fx_call`` rebuilds its Python call; ``"primitive"``/``"params"`` for primitive
  eqns; ``"state_path"`` for ``get_attr``), ``call_index`` (how many calls of the same
  target came earlier in the same scope, torch's module_name_object_type_order index).
* ``Graph.users(node)``, ``Graph.node(id)``, ``Graph.find(path=..., op=..., target=...)``,
  ``Graph.format()`` (a table like ``print_tabular``), ``Graph.copy()``,
  ``Graph.specialize(input_leaves)`` (the same graph for other input shapes, e.g.
  another batch size; :class:`GraphModule` calls it for you), ``Graph.meta``.
* :func:`interpret` ``(graph, root, inputs, node_hook=None)``: evaluates the graph;
  ``call_module`` nodes call ``get_submodule(root, node.module_path)`` for real (so
  BatchNorm statistics, observers and dropout RNG state update as usual), ``get_attr``
  reads the current variable value from ``root``, primitives are bound again.
  ``node_hook(node, outputs) -> outputs`` sees (and may replace) every node's outputs:
  the numeric debugger's entry point.
* :class:`GraphModule` (an ``nnx.Module``): ``root`` (the module tree) + ``graph``;
  calling it interprets the graph; it works under ``nnx.jit`` (the graph is static).

Calls made inside a ``jax.jit`` -ed helper are inlined into the graph; a leaf call inside
``jax.lax`` control flow (scan / cond / while) or an NNX lifted transform raises
``NotImplementedError``.

Node ids across the workflow (for tools that compare stages, e.g. a numeric debugger):
capture numbers nodes 0, 1, 2, ... in execution order; fusion keeps the id of a
pattern's first node for the fused node and drops the others; prepare keeps every id and
gives observer nodes fresh ids; convert keeps the ids of the nodes it replaces (a
quantized module / op keeps its float node's id, a quantize node keeps its observer
node's id) and gives inserted dequantize nodes fresh ids.

Deviations from torch.fx: capture is over concrete shapes (``example_inputs``, like
torch's pt2e export, not FX's shape-free symbolic tracing); Python control flow is
resolved at capture time; state mutated by non-leaf module code (not by leaf modules)
is not replayed; functions are only seen as one node when they are looked up through
their public namespace during the call (``jax.nn.relu(x)``, ``jnp.mean(x)``).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.fx.graph import capture
  >>> class MLP(nnx.Module):
  ...     def __init__(self):
  ...         self.fc1 = nnx.Linear(4, 8, rngs=nnx.Rngs(0))
  ...         self.fc2 = nnx.Linear(8, 2, rngs=nnx.Rngs(1))
  ...     def __call__(self, x):
  ...         return self.fc2(jax.nn.relu(self.fc1(x)))
  >>> gm = capture(MLP(), (jnp.ones((3, 4)),))
  >>> [(n.op, n.module_path or getattr(n.target, "__name__", n.target))
  ...  for n in gm.graph.nodes]  # doctest: +NORMALIZE_WHITESPACE
  [('placeholder', 'x_0'), ('call_module', 'fc1'), ('call_function', 'relu'),
   ('call_module', 'fc2'), ('output', 'output')]
  >>> gm(jnp.ones((3, 4))).shape
  (3, 2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend as jex
import numpy as np
from flax import nnx

from jaxq.eager._tree import get_submodule

__all__ = [
    "Ref", "Node", "Graph", "GraphModule", "capture", "interpret", "call_node",
    "CaptureSpec", "default_leaf_types", "default_leaf_functions", "fx_call_p",
    "module_paths",
]

# Capture lives in jaxq.fx.tracing; its public names are also reachable from here.
_TRACING_NAMES = ("capture", "CaptureSpec", "default_leaf_types", "default_leaf_functions",
                  "fx_call_p", "module_paths")


def __getattr__(name: str) -> Any:
    if name in _TRACING_NAMES:
        from jaxq.fx import tracing
        return getattr(tracing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------
# Data structures
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Ref:
    """A reference to output ``index`` of node ``node_id``."""

    node_id: int
    index: int = 0


@dataclasses.dataclass(eq=False)
class Node:
    """One operation of a :class:`Graph` (see the module docstring for the fields)."""

    id: int
    op: str
    target: Any
    name: str
    args: tuple = ()
    module_path: str = ""
    scope_type: Any = None
    num_outputs: int = 1
    call_index: int | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def input_ids(self) -> list[int]:
        """Ids of the nodes whose outputs this node reads (in argument order, unique)."""
        seen: list[int] = []
        for arg in self.args:
            if isinstance(arg, Ref) and arg.node_id not in seen:
                seen.append(arg.node_id)
        return seen

    def replace(self, **changes: Any) -> Node:
        """A copy with ``changes`` applied (``meta`` is copied, not shared)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["meta"] = dict(self.meta)
        fields.update(changes)
        return Node(**fields)

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.op}, {self.name})"


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    if isinstance(target, jex.core.Primitive):
        return target.name
    name = getattr(target, "__name__", None)
    if name is None:
        name = getattr(getattr(target, "fun", None), "__name__", None)
    return name or type(target).__name__


class Graph:
    """A captured model: nodes in execution order plus the input / output pytrees.

    Attributes:
      nodes: list of :class:`Node`, topologically ordered.
      in_tree: treedef of the model's positional inputs ``args`` (a tuple).
      out_tree: treedef of the model's output.
      meta: dict of workflow information (``"stage"``: ``"captured"``, ``"fused"``,
        ``"prepared"``, ``"converted"``; the prepare arguments convert needs).
    """

    def __init__(self, nodes: Sequence[Node], in_tree: Any, out_tree: Any,
                 meta: dict | None = None):
        self.nodes = list(nodes)
        self.in_tree = in_tree
        self.out_tree = out_tree
        self.meta = dict(meta or {})
        self._specialized: dict[tuple, Graph] = {}

    # -- lookups -------------------------------------------------------------------------
    def node(self, node_id: int) -> Node:
        """The node with id ``node_id`` (KeyError if none)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(f"node_id={node_id!r} is not in the graph")

    def by_id(self) -> dict[int, Node]:
        return {node.id: node for node in self.nodes}

    def users(self, node: Node | int) -> list[Node]:
        """Nodes reading any output of ``node``."""
        node_id = node if isinstance(node, int) else node.id
        return [n for n in self.nodes if node_id in n.input_ids]

    def find(self, *, op: str | None = None, path: str | None = None,
             target: Any = None) -> list[Node]:
        """Nodes matching every given criterion (``path`` compares ``module_path``)."""
        return [n for n in self.nodes
                if (op is None or n.op == op) and (path is None or n.module_path == path)
                and (target is None or n.target is target)]

    @property
    def output_node(self) -> Node:
        return self.nodes[-1]

    def next_id(self) -> int:
        return max((n.id for n in self.nodes), default=-1) + 1

    def copy(self) -> Graph:
        """A copy whose nodes can be edited without touching this graph."""
        return Graph([n.replace() for n in self.nodes], self.in_tree, self.out_tree,
                     self.meta)

    def specialize(self, input_leaves: Sequence[Any]) -> Graph:
        """This graph for inputs of other shapes / dtypes (e.g. another batch size).

        The graph was captured for ``meta["input_signature"]``; shape-dependent details
        (primitive parameters such as a reshape's sizes, call records, constants, avals)
        are re-derived by tracing the float model again on the new abstract inputs
        (:class:`CaptureSpec`: graphdef and shapes only) and copied onto this graph's
        nodes by id; inserted nodes (observers, quantize, dequantize) are unchanged.
        Results are cached per input signature.

        Raises:
          ValueError: the model's graph itself depends on the input shapes (different
            nodes), or the graph has no capture information.
        """
        from jaxq.fx.tracing import _signature
        signature = _signature(input_leaves)
        if signature == self.meta.get("input_signature"):
            return self
        if signature in self._specialized:
            return self._specialized[signature]
        spec = self.meta.get("capture_spec")
        if spec is None:
            raise ValueError("this graph has no capture information and only runs on inputs "
                             f"with signature {self.meta.get('input_signature')}")
        from jaxq.fx.tracing import _signature, _trace
        fresh = _trace(spec, [jax.ShapeDtypeStruct(shape, dtype)
                              for shape, dtype in signature], self.in_tree)
        if fresh.meta["captured_structure"] != self.meta.get("captured_structure"):
            raise ValueError(
                "the model's graph depends on the input shapes (tracing it on inputs "
                f"{signature} gives other nodes than on {self.meta.get('input_signature')})"
                "; prepare it with example_inputs of the shapes it will run on")
        specialized = self.copy()
        specialized.meta["input_signature"] = signature
        specialized.out_tree = fresh.out_tree
        fresh_nodes = fresh.by_id()
        captured = self.meta.get("num_captured", 0)
        for node in specialized.nodes:
            if node.id >= captured or node.id not in fresh_nodes:
                continue
            source = fresh_nodes[node.id]
            last = fresh_nodes[node.meta["fused_from"][-1]] if "fused_from" in node.meta \
                else source
            node.meta["avals"] = last.meta.get("avals")
            for key in ("params", "primitive", "ctx", "call", "input_index",
                        "state_path"):
                if key in source.meta and key in node.meta:
                    node.meta[key] = source.meta[key]
            if len(node.args) == len(source.args):
                node.args = tuple(
                    new if not isinstance(old, Ref) and not isinstance(new, Ref) else old
                    for old, new in zip(node.args, source.args))
        self._specialized[signature] = specialized
        return specialized

    def format(self) -> str:
        """A table of the nodes (torch's ``print_tabular``)."""
        rows = [("id", "op", "name", "target", "module_path", "args")]
        for n in self.nodes:
            args = ", ".join(f"%{a.node_id}" + (f"[{a.index}]" if a.index else "")
                             if isinstance(a, Ref) else _short(a) for a in n.args)
            rows.append((str(n.id), n.op, n.name, _target_name(n.target), n.module_path,
                         args))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes)"


def _short(value: Any) -> str:
    if isinstance(value, (np.ndarray, jax.Array)):
        return f"const{tuple(value.shape)}"
    return repr(value)


# --------------------------------------------------------------------------------------
# Interpretation
# --------------------------------------------------------------------------------------

NodeHook = Callable[[Node, list], list]


def _state_value(root: nnx.Module, path: tuple) -> Any:
    node: Any = root
    for part in path:
        if isinstance(node, nnx.Module) and isinstance(part, str) and part in vars(node):
            node = vars(node)[part]
        else:
            node = node[part]
    return node.get_value() if isinstance(node, nnx.Variable) else node


def call_node(node: Node, root: nnx.Module, values: Sequence[Any]) -> list:
    """Evaluates one node on input ``values`` (one per ``Ref``/constant of ``node.args``).

    ``node.meta["function"]``, when set (convert puts quantized kernels there), replaces
    the node's own callable; it receives the same arguments.

    Returns the node's outputs as a list.
    """
    record = node.meta.get("call")
    if record is not None:
        leaves = list(record.static_leaves)
        for position, value in zip(record.dynamic_positions, values):
            leaves[position] = value
        args, kwargs = jax.tree.unflatten(record.arg_tree, leaves)
    else:
        args, kwargs = tuple(values), dict(node.meta.get("kwargs", {}))
    if "function" in node.meta:
        fn = node.meta["function"]
    elif node.op == "call_module":
        fn = get_submodule(root, node.module_path, "module_path")
    elif record is not None:
        fn = record.fn
    elif "primitive" in node.meta:
        prim = node.meta["primitive"]
        bind_params = prim.get_bind_params(node.meta["params"])
        with node.meta["ctx"]:
            result = prim.bind(*values, **bind_params)
        return list(result) if prim.multiple_results else [result]
    else:
        fn = node.target
    out = fn(*args, **kwargs)
    if record is None and node.num_outputs == 1:
        return [out]
    return list(jax.tree.leaves(out, is_leaf=_is_qtensor))


def _is_qtensor(value: Any) -> bool:
    from jaxq.core.qtensor import QTensor
    return isinstance(value, QTensor)


def interpret(graph: Graph, root: nnx.Module, inputs: tuple,
              node_hook: NodeHook | None = None) -> Any:
    """Evaluates ``graph`` with the modules and variables of ``root``.

    Args:
      graph: the graph.
      root: the module tree the graph's paths refer to.
      inputs: the positional inputs (same pytree structure as at capture).
      node_hook: optional ``hook(node, outputs) -> outputs`` called after every
        placeholder / get_attr / call node.

    Returns:
      The model output (the captured output pytree).
    """
    input_leaves, in_tree = jax.tree.flatten(tuple(inputs))
    if in_tree != graph.in_tree:
        raise ValueError(f"inputs have structure {in_tree}; the graph was captured with "
                         f"{graph.in_tree}")
    env: dict[int, list] = {}

    def read(arg: Any) -> Any:
        if isinstance(arg, Ref):
            return env[arg.node_id][arg.index]
        return arg

    result = None
    for node in graph.nodes:
        if node.op == "placeholder":
            outputs = [input_leaves[node.meta["input_index"]]]
        elif node.op == "get_attr":
            outputs = [_state_value(root, node.meta["state_path"])]
        elif node.op == "output":
            result = [read(a) for a in node.args]
            break
        else:
            outputs = call_node(node, root, [read(a) for a in node.args])
        if node_hook is not None:
            outputs = list(node_hook(node, outputs))
        env[node.id] = outputs
    return jax.tree.unflatten(graph.out_tree, result)


class GraphModule(nnx.Module):
    """A captured model: ``root`` (the module tree) and ``graph`` (static).

    Calling it runs :func:`interpret`; ``nnx.jit(gm)`` / ``nnx.jit(lambda m, x: m(x))``
    compile it once per input shape. ``node_hook`` (a static attribute, default None)
    is passed to :func:`interpret` on every call.
    """

    def __init__(self, root: nnx.Module, graph: Graph):
        self.root = root
        self.graph = graph
        self.node_hook = None

    def __call__(self, *args: Any) -> Any:
        graph = self.graph.specialize(jax.tree.leaves(args)) \
            if jax.tree.structure(args) == self.graph.in_tree else self.graph
        return interpret(graph, self.root, args, self.node_hook)

    def print_tabular(self) -> None:
        print(self.graph.format())
