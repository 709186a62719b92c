"""Observer insertion on a fused :class:`~jaxq.fx.graph.GraphModule` (torch's
``fx/prepare.py``).

Given a graph (already fused, see :mod:`jaxq.fx.fuse`), a QConfigMapping and a
BackendConfig, :func:`prepare_graph_module`:

1. resolves every node's QConfig with torch's precedence (:func:`jaxq.fx.match.node_qconfig`);
2. for QAT, swaps every configured module that the BackendConfig gives a ``qat_module``
   (``nnx.Linear`` -> ``jaxq.nn.qat.Linear``, ``ConvBnReLU2d`` ->
   ``jaxq.nn.intrinsic.qat.ConvBnReLU2d``, ...) through the eager ``swap_module``;
3. matches the BackendConfig's patterns (:func:`jaxq.fx.match.find_matches`) and keeps
   those whose QConfig the pattern's dtype configs support (activation dtype equals the
   config's input and output dtype, same ``is_dynamic``; float16 activation qconfigs
   are treated as "not quantized"). A single weighted module with a dynamic qconfig
   that a dynamic dtype config accepts gets ``meta["dynamic"] = True`` and no observers
   (torch inserts a placeholder observer on its input that convert removes again);
4. walks the nodes in order and inserts observer nodes where torch does:

   * input observers on the floating-point tensor arguments of each pattern's first node
     (torch's ``_needs_obs_or_fq``: only when the argument is not already observed with
     the same dtype; an existing observer of the same type and dtype on that value is
     reused; a ``ReuseInputObserver`` qconfig observes no input);
   * an output observer after each pattern's last node, unless its observation type is
     ``INPUT_OUTPUT_NOT_OBSERVED``; for ``OUTPUT_SHARE_OBSERVER_WITH_INPUT`` (and
     reuse-input qconfigs) the output observer node calls the observer of the first
     input (found by walking first arguments back, as torch's
     ``_maybe_make_input_output_share_observers``) or is removed when there is none.

   Users of an observed value read the observer node's output (an observer returns its
   input; a fake-quant returns the fake-quantized input).

Observers live on the root module as ``activation_post_process_<k>`` attributes (torch's
names). Observer nodes are ``call_module`` nodes with ``meta["observer"] = True``;
``meta["observed"]`` is the Ref they observe. Each quantized pattern's nodes carry
``meta["qconfig"]`` and ``meta["pattern_config"]``; its last node carries
``meta["output_observer"]`` (the observer node id, or None).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxq.backend_config.backend_config import ObservationType
from jaxq.core import dtypes as qd
from jaxq.eager._tree import get_submodule, set_submodule
from jaxq.fx.fuse import module_type_getter
from jaxq.fx.graph import Graph, GraphModule, Node, Ref
from jaxq.fx.match import check_fused_qconfigs, find_matches, node_qconfig

__all__ = ["prepare_graph_module", "OBSERVED_DTYPES", "quantization_patterns"]

OBSERVED_DTYPES = (qd.quint8, qd.qint8, qd.qint32, qd.uint8, qd.int8, qd.int16, qd.int32,
                   qd.uint16)


def quantization_patterns(backend_config: Any) -> dict:
    """``{forward pattern: BackendPatternConfig}`` of the patterns graph mode matches."""
    patterns = {}
    for config in backend_config.configs:
        if config.pattern is None or config._input_type_to_index:
            continue
        patterns.setdefault(config.pattern, config)
    return patterns


def _observer_dtype(observer: Any) -> Any:
    dtype = getattr(observer, "dtype", None)
    try:
        return qd.as_quant_dtype(dtype)
    except (TypeError, ValueError):
        return dtype


def _is_dynamic(observer: Any) -> bool:
    return bool(getattr(observer, "is_dynamic", False))


def _qconfig_supported(qconfig: Any, config: Any) -> bool:
    """torch's ``_is_pattern_dtype_config_and_qconfig_supported_by_backend`` (dtypes and
    is_dynamic; the DTypeWithConstraints bounds are not checked)."""
    if qconfig is None or qconfig.activation is None:
        return False
    activation = qconfig.activation()
    dtype = _observer_dtype(activation)
    if dtype not in OBSERVED_DTYPES or _is_dynamic(activation):
        return False
    if not config.dtype_configs:
        return True
    for dtype_config in config.dtype_configs:
        if bool(dtype_config.is_dynamic):
            continue
        input_dtype = dtype_config.input_dtype_with_constraints.dtype
        output_dtype = dtype_config.output_dtype_with_constraints.dtype
        if input_dtype is not None and input_dtype != dtype:
            continue
        if output_dtype is not None and output_dtype != dtype:
            continue
        return True
    return False


def _dynamic_supported(qconfig: Any, config: Any, node: Node, module_type: Any) -> bool:
    """Dynamic quantization of a single weighted module (torch's dynamic Linear / RNN
    cells): a dynamic activation qconfig that one of the pattern's dynamic dtype configs
    accepts."""
    if qconfig is None or qconfig.activation is None or node.op != "call_module":
        return False
    activation = qconfig.activation()
    if not _is_dynamic(activation):
        return False
    dtype = _observer_dtype(activation)
    for dtype_config in config.dtype_configs:
        if not dtype_config.is_dynamic:
            continue
        input_dtype = dtype_config.input_dtype_with_constraints.dtype
        if input_dtype is None or input_dtype == dtype:
            return True
    return False


def _is_reuse_input(qconfig: Any) -> bool:
    from jaxq.qconfig import _is_reuse_input_qconfig
    return _is_reuse_input_qconfig(qconfig)


def _is_float_tensor(graph_avals: dict, ref: Ref) -> bool:
    avals = graph_avals.get(ref.node_id)
    if not avals or ref.index >= len(avals):
        return False
    return jnp.issubdtype(avals[ref.index].dtype, jnp.floating)


def _observation_type(match_config: Any, node: Node) -> ObservationType:
    by_count = getattr(match_config, "_num_tensor_args_to_observation_type", None)
    if by_count:
        count = sum(1 for a in node.args if isinstance(a, Ref))
        if count in by_count:
            return by_count[count]
    return match_config.observation_type


def _swap_to_qat(root: nnx.Module, graph: Graph, qconfigs: dict[int, Any],
                 backend_config: Any) -> None:
    from jaxq.backend_config.utils import get_module_to_qat_module
    from jaxq.eager.conversion import swap_module
    mapping = {pattern: qat for pattern, qat in get_module_to_qat_module(backend_config).items()
               if isinstance(pattern, type)}
    for node in graph.nodes:
        if node.op != "call_module" or qconfigs.get(node.id) is None:
            continue
        module = get_submodule(root, node.module_path)
        if type(module) not in mapping:
            continue
        module.qconfig = qconfigs[node.id]
        qat = swap_module(module, mapping, {})
        if qat is not module:
            set_submodule(root, node.module_path, qat)
            node.meta["float_type"] = type(module)
    for node in graph.nodes:  # a module called twice is swapped once
        if node.op == "call_module":
            node.target = type(get_submodule(root, node.module_path))


def prepare_graph_module(gm: GraphModule, qconfig_mapping: Any, backend_config: Any,
                         is_qat: bool) -> GraphModule:
    """A new observed GraphModule (``gm`` is unchanged); see the module docstring."""
    root = nnx.clone(gm.root)
    graph = gm.graph.copy()
    module_type_of = module_type_getter(root)
    qconfigs: dict[int, Any] = {}
    for node in graph.nodes:
        if node.op in ("call_module", "call_function", "call_method"):
            if node.meta.get("fused_types"):
                check_fused_qconfigs(qconfig_mapping, node.meta["fused_types"])
            qconfigs[node.id] = node_qconfig(qconfig_mapping, node, module_type_of(node))
            node.meta["node_qconfig"] = qconfigs[node.id]
        elif node.op == "get_attr":
            from jaxq.fx.convert import _get_attr_qconfig
            node.meta["node_qconfig"] = _get_attr_qconfig(qconfig_mapping, root, node)
    if is_qat:
        _swap_to_qat(root, graph, qconfigs, backend_config)
    matches = find_matches(graph, quantization_patterns(backend_config), module_type_of)

    by_id = graph.by_id()
    avals = {n.id: n.meta.get("avals") for n in graph.nodes}
    quantized: dict[int, Any] = {}
    for match in {id(m): m for m in matches.values()}.values():
        root_qconfig = qconfigs.get(match.root.id)
        last_qconfig = qconfigs.get(match.last.id)
        if len(match.nodes) == 1 and _dynamic_supported(
                root_qconfig, match.config, match.root, module_type_of(match.root)):
            match.root.meta["qconfig"] = root_qconfig
            match.root.meta["dynamic"] = True
            continue
        if _qconfig_supported(root_qconfig, match.config) and \
                _qconfig_supported(last_qconfig, match.config):
            for n in match.nodes:
                quantized[n.id] = match
                n.meta["qconfig"] = qconfigs[n.id]
                n.meta["pattern_config"] = match.config
                n.meta["pattern_nodes"] = tuple(x.id for x in match.nodes)

    next_id = graph.next_id()
    counter = [0]
    new_nodes: list[Node] = []
    redirect: dict[tuple[int, int], Ref] = {}
    # value -> list of (observer node, observer module)
    value_observers: dict[tuple[int, int], list[tuple[Node, Any]]] = {}
    observer_of: dict[int, Any] = {}          # observer node id -> observer module
    output_dtype: dict[tuple[int, int], Any] = {}   # observed value -> its dtype

    def new_observer_node(value: Ref, observer: Any, kind: str, path: str | None = None
                          ) -> Node:
        nonlocal next_id
        if path is None:
            path = f"activation_post_process_{counter[0]}"
            counter[0] += 1
            setattr(root, path, observer)
        node = Node(id=next_id, op="call_module", target=type(observer),
                    name=path if kind != "shared" else f"{path}_shared_{next_id}",
                    args=(value,), module_path=path,
                    meta={"observer": True, "observed": value, "kind": kind,
                          "avals": (avals[value.node_id][value.index],)})
        next_id += 1
        avals[node.id] = node.meta["avals"]
        by_id[node.id] = node
        observer_of[node.id] = observer
        output_dtype[(node.id, 0)] = _observer_dtype(observer)
        return node

    def resolve(arg: Any) -> Any:
        if isinstance(arg, Ref):
            return redirect.get((arg.node_id, arg.index), arg)
        return arg

    for node in graph.nodes:
        node.args = tuple(resolve(a) for a in node.args)
        match = quantized.get(node.id)
        if match is not None and node is match.root and not _is_reuse_input(
                node.meta["qconfig"]):
            qconfig = node.meta["qconfig"]
            new_args = []
            for arg in node.args:
                if not isinstance(arg, Ref) or not _is_float_tensor(avals, arg):
                    new_args.append(arg)
                    continue
                wanted = qconfig.activation()
                wanted_dtype = _observer_dtype(wanted)
                have = output_dtype.get((arg.node_id, arg.index))
                if have == wanted_dtype:
                    new_args.append(arg)
                    continue
                existing = None
                for obs_node, obs in value_observers.get((arg.node_id, arg.index), []):
                    if type(obs) is type(wanted) and _observer_dtype(obs) == wanted_dtype:
                        existing = obs_node
                        break
                if existing is None:
                    existing = new_observer_node(arg, wanted, "input")
                    new_nodes.append(existing)
                    value_observers.setdefault((arg.node_id, arg.index), []).append(
                        (existing, wanted))
                new_args.append(Ref(existing.id))
            node.args = tuple(new_args)
        new_nodes.append(node)
        if match is not None and node is match.last:
            node.meta["output_observer"] = None
            qconfig = node.meta["qconfig"]
            observation = _observation_type(match.config, match.root)
            if observation is ObservationType.INPUT_OUTPUT_NOT_OBSERVED:
                continue
            share = (observation is ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT
                     or _is_reuse_input(qconfig))
            if share:
                source = _first_observer(match.root, by_id, observer_of)
                if source is None:
                    continue
                observer = observer_of[source.id]
                _share_input_observers(match.root, source, by_id, observer_of)
                obs_node = new_observer_node(Ref(node.id), observer, "shared",
                                             path=source.module_path)
            else:
                obs_node = new_observer_node(Ref(node.id), qconfig.activation(), "output")
            new_nodes.append(obs_node)
            node.meta["output_observer"] = obs_node.id
            redirect[(node.id, 0)] = Ref(obs_node.id)
            value_observers.setdefault((node.id, 0), []).append(
                (obs_node, observer_of[obs_node.id]))
    prepared = Graph(new_nodes, graph.in_tree, graph.out_tree)
    prepared.meta = dict(getattr(gm.graph, "meta", {}))
    for node in prepared.nodes:
        if node.op == "call_module" and not node.meta.get("observer") \
                and node.meta.get("qconfig") is not None:
            module = get_submodule(root, node.module_path)
            if getattr(module, "qconfig", None) is None:
                module.qconfig = node.meta["qconfig"]
    return GraphModule(root, prepared)


def _share_input_observers(node: Node, source: Node, by_id: dict[int, Node],
                           observer_of: dict[int, Any]) -> None:
    """Points the observer nodes of ``node``'s other tensor inputs at ``source``'s observer
    (torch's ``_maybe_make_input_output_share_observers`` for ``cat``-like ops)."""
    for arg in [a for a in node.args if isinstance(a, Ref)][1:]:
        current = by_id.get(arg.node_id)
        guard = 0
        while current is not None and current.id not in observer_of and guard < 10000:
            first = next((a for a in current.args if isinstance(a, Ref)), None)
            current = by_id.get(first.node_id) if first is not None else None
            guard += 1
        if current is not None and current.id in observer_of and current is not source:
            current.module_path = source.module_path
            observer_of[current.id] = observer_of[source.id]


def _first_observer(node: Node, by_id: dict[int, Node], observer_of: dict[int, Any]
                    ) -> Node | None:
    """The observer node reached from ``node``'s first tensor argument by following first
    arguments back (torch's ``_maybe_make_input_output_share_observers``)."""
    first = next((a for a in node.args if isinstance(a, Ref)), None)
    guard = 0
    while first is not None and guard < 10000:
        producer = by_id.get(first.node_id)
        if producer is None:
            return None
        if producer.id in observer_of:
            return producer
        if producer.op in ("placeholder", "get_attr"):
            return None
        first = next((a for a in producer.args if isinstance(a, Ref)), None)
        guard += 1
    return None
