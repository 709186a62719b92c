"""PT2E numeric debugger: debug handles on graph nodes and per-node output loggers.

The JAX analogue of ``torch.ao.quantization.pt2e._numeric_debugger`` for graphs captured
by :func:`jaxq.fx.graph.capture`:

1. :func:`generate_numeric_debug_handle` gives every computing node of a captured float
   graph a unique integer handle in ``node.meta[CUSTOM_KEY][NUMERIC_DEBUG_HANDLE_KEY]``.
   Graph-mode prepare / convert keep a float node's ``meta`` on the node that replaces it,
   so a quantized node carries the handle of the float node it stands for.
2. :func:`prepare_for_propagation_comparison` returns a copy of a model whose every
   node carrying a handle feeds an :class:`OutputLogger` (one per node, named
   ``"<node name>_logger<i>"`` like torch's), recording the node's output on each call.
3. :func:`extract_results_from_loggers` collects ``{handle: (node_name, nn_module_stack,
   [outputs per call])}``; :func:`jaxq.pt2e.compare_results` turns a float and a quantized
   model's results into SQNR / MSE per handle.

Deviations from torch:

* The entry point takes the captured model (a :class:`jaxq.fx.graph.GraphModule`, or
  anything with a ``graph`` and a ``root``) instead of a ``torch.export.ExportedProgram``;
  like torch's export graph (where parameters are placeholders) ``get_attr`` nodes, which
  only read variables, get no handle.
* ``nn_module_stack`` is ``{fqn: (fqn, "module.QualifiedType")}`` from the root down to the
  module whose code produced the node (torch keys it by its own mangled names,
  ``"L__self__fc1"``; the values have torch's form).
* The logging model compiles itself: calling it runs one ``jax.jit``-compiled pass of the
  graph (compiled once per input shape) that returns the logged outputs beside the model
  output, and appends them to the loggers afterwards. Pass ``jit=False`` to
  :func:`prepare_for_propagation_comparison` to run node by node instead. Logging cannot
  happen inside a caller's ``jax.jit`` (recorded values must be concrete), which raises.
* When several nodes carry the same handle (an observer, quantize or dequantize node
  inherits the handle of the node whose output it processes), torch's
  ``extract_results_from_loggers`` keeps the last logger in graph order; so does jaxq.
* A model without any handle is rejected by :func:`prepare_for_propagation_comparison`
  (torch silently returns a model with no loggers).

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
  >>> generate_numeric_debug_handle(gm)
  >>> [n.meta[CUSTOM_KEY][NUMERIC_DEBUG_HANDLE_KEY] for n in gm.graph.nodes
  ...  if CUSTOM_KEY in n.meta]
  [1, 2, 3]
  >>> logged = prepare_for_propagation_comparison(gm)
  >>> _ = logged(jnp.ones((3, 4)))
  >>> results = extract_results_from_loggers(logged)
  >>> [(h, name, len(stats)) for h, (name, _, stats) in results.items()]
  [(1, 'fc1', 1), (2, 'relu', 1), (3, 'fc2', 1)]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
from flax import nnx

from jaxq.eager._tree import get_submodule
from jaxq.fx.convert import CUSTOM_META_KEY
from jaxq.fx.graph import Graph, Node, interpret

__all__ = [
    "CUSTOM_KEY", "NUMERIC_DEBUG_HANDLE_KEY", "generate_numeric_debug_handle",
    "numeric_debug_handle", "transfer_numeric_debug_handles", "OutputLogger", "LoggingGraphModule",
    "prepare_for_propagation_comparison", "extract_results_from_loggers",
]

NUMERIC_DEBUG_HANDLE_KEY = "numeric_debug_handle"
CUSTOM_KEY = CUSTOM_META_KEY  # "custom": graph-mode convert carries it to quantize nodes

# Nodes that never get a handle: torch skips placeholders and the output; get_attr nodes
# only read variables (torch's export graph has them as placeholders).
_NO_HANDLE_OPS = ("placeholder", "output", "get_attr")


def _graph_of(model: Any, argument: str = "model") -> Graph:
    graph = model if isinstance(model, Graph) else getattr(model, "graph", None)
    if not isinstance(graph, Graph):
        raise TypeError(
            f"{argument} must be a captured model (jaxq.fx.graph.GraphModule from "
            f"jaxq.fx.graph.capture, or a model from prepare_fx / convert_fx) or a "
            f"jaxq.fx.graph.Graph; got {type(model).__name__}")
    return graph


def numeric_debug_handle(node: Node) -> int | None:
    """The numeric debug handle of ``node``, or None when it has none."""
    custom = node.meta.get(CUSTOM_KEY)
    if isinstance(custom, dict):
        return custom.get(NUMERIC_DEBUG_HANDLE_KEY)
    return None


def _is_inserted(node: Node) -> bool:
    """An observer / quantize / dequantize node that graph-mode prepare / convert added."""
    return any(node.meta.get(key) for key in ("observer", "quantize", "dequantize"))


def _source_handle(node: Node, by_id: dict[int, Node]) -> int | None:
    """The handle of the node whose output ``node`` (an inserted node) processes."""
    for node_id in node.input_ids:
        source = by_id.get(node_id)
        if source is not None:
            return numeric_debug_handle(source)
    return None


def _set_handle(node: Node, handle: int) -> None:
    # A fresh dict: Node.replace copies ``meta`` shallowly, so a CUSTOM_KEY dict shared
    # with another graph must not be written into.
    custom = dict(node.meta.get(CUSTOM_KEY) or {})
    custom[NUMERIC_DEBUG_HANDLE_KEY] = handle
    node.meta[CUSTOM_KEY] = custom


# graph.meta key of ``{node id: handle}`` for every handled node, kept by Graph.copy and by
# the later stages: it lets a node that absorbed a removed node find that node's handle.
_HANDLES_BY_ID_KEY = "numeric_debug_handles_by_node_id"


def _record_handles(graph: Graph) -> None:
    recorded = dict(graph.meta.get(_HANDLES_BY_ID_KEY) or {})
    for node in graph.nodes:
        handle = numeric_debug_handle(node)
        if handle is not None and node.id not in recorded:
            recorded[node.id] = handle
    graph.meta[_HANDLES_BY_ID_KEY] = recorded


def _inherit_handles(graph: Graph) -> None:
    """Gives handle-less inserted nodes the handle of the node they observe (torch's
    prepare / convert propagate it to the observer and to the quantize / dequantize).

    An add / mul that convert fused with the relu after it (``meta["fused_relu"]``, the
    relu node's id) computes the relu's output, so it takes the relu's handle, found in
    the handles recorded when the graph was handled.
    """
    by_id = graph.by_id()
    recorded = graph.meta.get(_HANDLES_BY_ID_KEY) or {}
    for node in graph.nodes:
        fused_relu = node.meta.get("fused_relu")
        if fused_relu in recorded and numeric_debug_handle(node) != recorded[fused_relu]:
            _set_handle(node, recorded[fused_relu])
        if numeric_debug_handle(node) is None and _is_inserted(node):
            handle = _source_handle(node, by_id)
            if handle is not None:
                _set_handle(node, handle)


def generate_numeric_debug_handle(graph_module: Any) -> None:
    """Attaches a unique integer handle to every computing node of ``graph_module``.

    Every node except placeholders, ``get_attr`` nodes and the output gets
    ``node.meta[CUSTOM_KEY][NUMERIC_DEBUG_HANDLE_KEY] = handle``. As in torch, handles
    already present are kept, and new ones count up from one past the largest existing
    handle (from 1 on a fresh graph), in graph (execution) order. The graph is modified in
    place; copies of the model made afterwards (``nnx.clone``, convert) carry the same
    handles.

    Nodes that graph-mode prepare / convert inserted to observe, quantize or dequantize
    another node's output (``meta["observer"]`` / ``["quantize"]`` / ``["dequantize"]``)
    get that node's handle instead of a new one, which is how torch's prepare / convert
    propagate handles; so the model returned by ``prepare_fx`` can be handled too
    (``prepare_fx`` captures the float model itself), and :func:`convert_fx`'s output keeps
    the handles of the float nodes it replaces.

    Args:
      graph_module: a captured model (:class:`jaxq.fx.graph.GraphModule`, also from
        ``prepare_fx`` / ``convert_fx``) or its :class:`jaxq.fx.graph.Graph`.

    Raises:
      TypeError: ``graph_module`` is not a captured model or graph.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxq.fx.graph import capture
      >>> model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
      >>> gm = capture(model, (jnp.ones((1, 2)),))
      >>> generate_numeric_debug_handle(gm)
      >>> [(n.op, numeric_debug_handle(n)) for n in gm.graph.nodes]
      [('placeholder', None), ('call_module', 1), ('output', None)]
    """
    graph = _graph_of(graph_module, "graph_module")
    by_id = graph.by_id()
    handled = [n for n in graph.nodes if n.op not in _NO_HANDLE_OPS]
    next_handle = max((h for h in map(numeric_debug_handle, handled) if h is not None),
                      default=0) + 1
    for node in handled:
        if numeric_debug_handle(node) is not None:
            continue
        if _is_inserted(node):
            handle = _source_handle(node, by_id)
            if handle is not None:
                _set_handle(node, handle)
            continue
        _set_handle(node, next_handle)
        next_handle += 1
    _record_handles(graph)


def transfer_numeric_debug_handles(source: Any, target: Any) -> None:
    """Copies the handles of a handled float capture onto a prepared / converted model.

    The torch flow handles the exported float graph and then prepares it; ``prepare_fx``
    takes the float ``nnx.Module`` and captures it itself, so its nodes do not carry the
    handles of a separate capture. Node ids are stable through capture, fusion, prepare
    and convert (a node that replaces a float node keeps its id), so:

    * a node of ``target`` with the id and name of a handled node of ``source`` gets
      its handle;
    * a fused node (``meta["fused_from"]``: the ids of the float nodes it replaced) gets
      the handle of the LAST of them, whose output it computes (conv + relu -> relu's);
    * observer / quantize / dequantize nodes get the handle of the node they process;
    * an add / mul fused with its relu (``meta["fused_relu"]``) gets the relu's handle.

    Handles already on ``target`` are kept. ``source`` must be captured like
    ``prepare_fx`` captures (same leaf modules / functions), otherwise ids differ and
    fewer nodes match.

    Args:
      source: the handled float capture (see :func:`generate_numeric_debug_handle`).
      target: a model from ``prepare_fx`` / ``prepare_qat_fx`` / ``convert_fx`` of the
        same float model (modified in place).

    Raises:
      TypeError: an argument is not a captured model.
      ValueError: ``source`` has no handles, or no node of ``target`` matches one.
    """
    source_graph = _graph_of(source, "source")
    target_graph = _graph_of(target, "target")
    handles = {n.id: (n.name, numeric_debug_handle(n)) for n in source_graph.nodes
               if numeric_debug_handle(n) is not None}
    if not handles:
        raise ValueError("source has no numeric debug handles; call "
                         "generate_numeric_debug_handle(source) first")
    matched = 0
    for node in target_graph.nodes:
        if numeric_debug_handle(node) is not None or node.op in _NO_HANDLE_OPS:
            continue
        fused_from = node.meta.get("fused_from")
        if fused_from and fused_from[-1] in handles:
            _set_handle(node, handles[fused_from[-1]][1])
            matched += 1
        elif node.id in handles and handles[node.id][0] == node.name:
            _set_handle(node, handles[node.id][1])
            matched += 1
    target_graph.meta[_HANDLES_BY_ID_KEY] = {
        **(target_graph.meta.get(_HANDLES_BY_ID_KEY) or {}),
        **{node_id: handle for node_id, (_, handle) in handles.items()}}
    if not matched:
        raise ValueError("no node of target matches a handled node of source (same id and "
                         "name); source must be the capture of the model target was "
                         "prepared from, captured with the same leaf modules / functions")
    _inherit_handles(target_graph)


def _type_name(module_type: Any) -> str:
    return f"{module_type.__module__}.{module_type.__qualname__}"


def nn_module_stack(node: Node, root: nnx.Module) -> dict[str, tuple[str, str]]:
    """``{fqn: (fqn, type name)}`` of the modules from ``root`` down to ``node``'s module.

    The module of a ``call_module`` node is the called module; for other nodes it is the
    module whose code ran the operation (``node.module_path``).
    """
    stack = {"": ("", _type_name(type(root)))}
    if not node.module_path:
        return stack
    parts = node.module_path.split(".")
    for i in range(1, len(parts) + 1):
        path = ".".join(parts[:i])
        try:
            module_type = type(get_submodule(root, path, "module_path"))
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            module_type = node.target if (node.op == "call_module"
                                          and path == node.module_path) else None
        stack[path] = (path, _type_name(module_type) if isinstance(module_type, type)
                       else "")
    return stack


class OutputLogger(nnx.Module):
    """Records the output of one node on every call (torch's ``OutputLogger``).

    Attributes:
      debug_handle: the node's numeric debug handle (int).
      node_name: the node's name.
      nn_module_stack: ``{fqn: (fqn, type name)}`` of the node's enclosing modules.
      node_id: the node's id in the graph it logs.
      stats: list of recorded outputs, one per call: an array (or
        :class:`jaxq.QTensor`) for a single-output node, a tuple for several outputs.
    """

    def __init__(self, debug_handle: int, node_name: str | None = None,
                 nn_module_stack: Any = None, node_id: int | None = None):
        self.debug_handle = debug_handle
        self.node_name = node_name
        self.nn_module_stack = nn_module_stack
        self.node_id = node_id
        self.stats: list[Any] = []

    def __call__(self, x: Any) -> Any:
        for leaf in jax.tree.leaves(x):
            if isinstance(leaf, jax.core.Tracer):
                raise ValueError(
                    f"OutputLogger for node {self.node_name!r} received a traced value: "
                    "a logging model records concrete outputs and cannot run inside "
                    "jax.jit / nnx.jit (it compiles itself; call it directly)")
        self.stats.append(x)
        return x

    def __repr__(self) -> str:
        return (f"OutputLogger(debug_handle={self.debug_handle}, node_name={self.node_name}, "
                f"nn_module_stack={self.nn_module_stack}, num_stats={len(self.stats)})")


def _pack_outputs(outputs: list) -> Any:
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _run_and_log(graph: Graph, graphdef: Any, logged_ids: frozenset, state: Any,
                 inputs: tuple) -> tuple[Any, dict, Any]:
    root = nnx.merge(graphdef, state)
    logs: dict[int, Any] = {}

    def hook(node: Node, outputs: list) -> list:
        if node.id in logged_ids:
            logs[node.id] = _pack_outputs(outputs)
        return outputs

    out = interpret(graph, root, inputs, hook)
    return out, logs, nnx.state(root)


_run_and_log_jit = jax.jit(_run_and_log, static_argnums=(0, 1, 2))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class LoggingGraphModule(nnx.Module):
    """A captured model with an :class:`OutputLogger` after every node carrying a handle.

    Built by :func:`prepare_for_propagation_comparison`. ``root`` and ``graph`` are copies
    of the original model's; the loggers are attributes named ``"<node name>_logger<i>"``.
    Calling it evaluates the graph like the original model, updates ``root``'s state
    (BatchNorm statistics, observers, RNG counters) and appends each logged node's output
    to its logger.
    """

    def __init__(self, root: nnx.Module, graph: Graph, jit: bool = True):
        self.root = root
        self.graph = graph
        self.jit = jit

    def loggers(self) -> Iterator[OutputLogger]:
        """The loggers in graph order."""
        for value in vars(self).values():
            if isinstance(value, OutputLogger):
                yield value

    def __call__(self, *args: Any) -> Any:
        loggers = {logger.node_id: logger for logger in self.loggers()}
        graphdef, state = nnx.split(self.root)
        if not self.jit or not _hashable(graphdef):
            # Modules with unhashable static attributes cannot be a jit cache key: run
            # node by node (same results, slower).
            def hook(node: Node, outputs: list) -> list:
                if node.id in loggers:
                    loggers[node.id](_pack_outputs(outputs))
                return outputs
            return interpret(self.graph, self.root, args, hook)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args)):
            raise ValueError(
                "a logging model records concrete outputs and cannot run inside "
                "jax.jit / nnx.jit (it compiles itself; call it directly)")
        out, logs, new_state = _run_and_log_jit(self.graph, graphdef, frozenset(loggers),
                                                state, args)
        nnx.update(self.root, new_state)
        for node in self.graph.nodes:
            if node.id in loggers:
                loggers[node.id](logs[node.id])
        return out


def prepare_for_propagation_comparison(model: Any, *, jit: bool = True
                                       ) -> LoggingGraphModule:
    """A copy of ``model`` that logs the output of every node carrying a debug handle.

    Args:
      model: a captured model whose graph went through
        :func:`generate_numeric_debug_handle` (directly, or before prepare / convert):
        a :class:`jaxq.fx.graph.GraphModule` or any object with ``graph``
        (:class:`jaxq.fx.graph.Graph`) and ``root`` (``nnx.Module``). Not modified.
      jit: compile the logging pass with ``jax.jit`` (default); False runs it node by node.

    Returns:
      A :class:`LoggingGraphModule`; call it on inputs, then read the results with
      :func:`extract_results_from_loggers`.

    Raises:
      TypeError: ``model`` is not a captured model.
      ValueError: no node of ``model`` has a debug handle.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxq.fx.graph import capture
      >>> model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
      >>> gm = capture(model, (jnp.ones((1, 2)),))
      >>> generate_numeric_debug_handle(gm)
      >>> logged = prepare_for_propagation_comparison(gm)
      >>> [logger.node_name for logger in logged.loggers()]
      ['layers_0']
    """
    graph = _graph_of(model)
    root = getattr(model, "root", None)
    if not isinstance(root, nnx.Module):
        raise TypeError(f"model must have a `root` nnx.Module holding its modules; got "
                        f"{type(root).__name__}")
    if not isinstance(jit, bool):
        raise TypeError(f"jit must be True or False; got {jit!r}")
    if not any(numeric_debug_handle(n) is not None for n in graph.nodes):
        raise ValueError(
            "model has no node with a numeric debug handle (node.meta[CUSTOM_KEY]"
            "[NUMERIC_DEBUG_HANDLE_KEY]); call jaxq.pt2e.generate_numeric_debug_handle on "
            "the captured float model before preparing / converting it")
    graph = graph.copy()
    # convert_fx copies the observer's handle to the quantize node replacing it, but its
    # dequantize nodes have fresh meta and an add / mul it fused with a relu still holds
    # the add's handle: they take the handle of the node they process / the relu's here.
    _inherit_handles(graph)
    logging_model = LoggingGraphModule(nnx.clone(root), graph, jit)
    used_names = set(vars(logging_model))
    for node in graph.nodes:
        if numeric_debug_handle(node) is None:
            continue
        index = 0
        while f"{node.name}_logger{index}" in used_names:
            index += 1
        name = f"{node.name}_logger{index}"
        used_names.add(name)
        setattr(logging_model, name,
                OutputLogger(numeric_debug_handle(node), node.name,
                             nn_module_stack(node, root), node.id))
    return logging_model


def extract_results_from_loggers(model: LoggingGraphModule
                                 ) -> dict[int, tuple[str | None, Any, list]]:
    """``{handle: (node_name, nn_module_stack, [output per call])}`` from ``model``'s loggers.

    Loggers that recorded nothing are left out, as in torch. When several nodes share a
    handle the last one in graph order wins (torch's behaviour), which for a quantized
    graph is the node whose output stands for the float node's output.

    Args:
      model: a model returned by :func:`prepare_for_propagation_comparison`, after calls.

    Raises:
      TypeError: ``model`` is not such a model.
    """
    if not isinstance(model, LoggingGraphModule):
        raise TypeError("model must be the model returned by "
                        "jaxq.pt2e.prepare_for_propagation_comparison; got "
                        f"{type(model).__name__}")
    results: dict[int, tuple[str | None, Any, list]] = {}
    for logger in model.loggers():
        if len(logger.stats) > 0:
            results[logger.debug_handle] = (logger.node_name, logger.nn_module_stack,
                                            logger.stats)
    return results
