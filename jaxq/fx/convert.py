"""Observed graph -> quantized graph (torch's ``fx/convert.py`` plus the x86 lowering).

:func:`convert_graph_module` walks an observed graph (see :mod:`jaxq.fx.prepare`) in
order, tracking statically which values are :class:`jaxq.QTensor` s at run time:

* an observer node on a floating-point value becomes a **quantize** node
  (``jaxq.quantize_per_tensor`` with the observer's ``calculate_qparams()``; it keeps
  the observer node's id and its ``meta[CUSTOM_META_KEY]``, where ``jaxq.pt2e`` keeps the
  numeric debug handle); an observer on a value that is already quantized with the
  same dtype is dropped (its users read the producer);
* a quantized pattern whose first node is a module with a quantized counterpart in
  jaxq's static module mapping (``nnx.Linear`` -> ``jaxq.nn.quantized.Linear``,
  ``LinearReLU`` -> ``jaxq.nn.intrinsic.quantized.LinearReLU``, ``nnx.Conv`` /
  ``ConvReLU2d`` / the QAT modules -> quantized convs, ...) is swapped through the eager
  ``swap_module`` (``from_float`` with ``activation_post_process`` = the pattern's
  output observer); the node keeps its id and now takes and returns QTensors;
* a quantized ``add`` / ``mul`` (optionally followed by ``relu`` in the same pattern)
  with two quantized inputs becomes ``jaxq.nn.quantized.ops.add`` / ``add_relu`` /
  ``mul`` / ``mul_relu`` with the output observer's qparams (the relu node is dropped);
* every other node runs in floating point: quantized arguments get a **dequantize**
  node in front (new id), exactly where torch's reference representation has its
  ``dequantize``; its output observer (if any) then becomes the quantize node after it.
  This is how ops that share their input's qparams (``relu``, ``max_pool``, ``reshape``,
  ...), fixed-qparams ops and ops without a lowered kernel are handled: ``dequantize ->
  float op -> quantize`` with the same qparams torch's quantized kernels use (exact for
  ops that only move or select values: relu, max pool, reshape, transpose);
* the graph output dequantizes quantized values.

Modules prepared for dynamic quantization (``meta["dynamic"]``) become
``jaxq.nn.quantized.dynamic`` modules (float in, float out), also for
``is_reference=True`` (torch's reference form spells the same numerics as
``choose_qparams -> quantize -> dequantize -> reference module``).

``is_reference=True`` swaps modules for jaxq's reference quantized modules
(``jaxq.nn.quantized.reference``: float compute on quantize-dequantized weights) and
runs every op in floating point between ``dequantize`` / ``quantize`` nodes, which is
torch's reference representation. A fused ``jaxq.nn.intrinsic`` container
(``LinearReLU``, ``ConvReLU2d``, ...) keeps its type and gets the reference module as its
first child (``nni.LinearReLU(nnqr.Linear, ReLU)``), as torch's
``convert_weighted_module`` does; ``jaxq.pt2e.lower_pt2e_quantized_to_x86`` lowers it to
the ``jaxq.nn.intrinsic.quantized`` module.

QAT modules (models from ``prepare_qat_fx``) in the reference path follow torch's
``convert_weighted_module``: every QAT module becomes its float module (``to_float()``:
``jaxq.nn.qat.Linear`` -> ``nnx.Linear``, ``ConvBn2d`` -> ``nnx.Conv`` with the batch
norm folded in, ``ConvBnReLU2d`` -> ``nni.ConvReLU2d``, ``LinearReLU`` ->
``nni.LinearReLU``), also where its node is not quantized; a quantized one then becomes
the reference module (or the fused container around it) whose weight qparams come from
the QAT module's own ``weight_fake_quant``, run once more on the float (folded) weight,
as torch does.
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.core import dtypes as qd
from jaxq.eager._tree import get_submodule, set_submodule
from jaxq.fx.graph import Graph, GraphModule, Node, Ref
from jaxq.fx.prepare import OBSERVED_DTYPES

__all__ = ["convert_graph_module", "quantize_node_function", "dequantize_value",
           "CUSTOM_META_KEY"]

CUSTOM_META_KEY = "custom"
"""``node.meta`` key of user metadata that convert carries from an observer node to the
quantize node replacing it (torch's ``CUSTOM_KEY``; ``jaxq.pt2e`` keeps its numeric debug
handle there)."""


def dequantize_value(x: Any) -> Any:
    """``x.dequantize()`` for a QTensor, ``x`` otherwise."""
    from jaxq.core.qtensor import QTensor
    return x.dequantize() if isinstance(x, QTensor) else x


def _quantize(x: Any, scale: np.ndarray, zero_point: np.ndarray, dtype: Any) -> Any:
    from jaxq.core.qtensor import quantize_per_tensor
    return quantize_per_tensor(jnp.asarray(x, jnp.float32), scale, zero_point, dtype)


def quantize_node_function(observer: Any) -> tuple[Any, dict]:
    """``(fn, qparams)``: ``fn(x)`` quantizes with ``observer.calculate_qparams()``.

    Raises:
      ValueError: a per-channel activation observer (graph mode quantizes activations
        per tensor, as torch's x86 backend).
    """
    scale, zero_point = observer.calculate_qparams()
    scale = np.asarray(scale, np.float32)
    zero_point = np.asarray(zero_point).astype(np.int32)
    if scale.size != 1:
        raise ValueError("activation observers must be per-tensor; got "
                         f"{type(observer).__name__} with {scale.size} scales")
    scale, zero_point = scale.reshape(()), zero_point.reshape(())
    dtype = qd.as_quant_dtype(observer.dtype)
    return (functools.partial(_quantize, scale=scale, zero_point=zero_point, dtype=dtype),
            {"scale": scale, "zero_point": zero_point, "dtype": dtype})


def _binary_function(target: Any, relu: bool) -> Any:
    import operator

    from jaxq.nn.quantized import ops
    if target is operator.add:
        return ops.add_relu if relu else ops.add
    if target is operator.mul:
        return ops.mul_relu if relu else ops.mul
    return None


def _quantized_binary(fn: Any, scale: np.ndarray, zero_point: np.ndarray, a: Any, b: Any
                      ) -> Any:
    return fn(a, b, scale, zero_point)


def _module_mapping(is_reference: bool) -> dict:
    from jaxq.quantization_mappings import (
        get_default_static_quant_module_mappings,
        get_default_static_quant_reference_module_mappings,
    )
    return (get_default_static_quant_reference_module_mappings() if is_reference
            else get_default_static_quant_module_mappings())


def _swap(module: Any, observer: Any, mapping: dict, qconfig: Any) -> Any:
    from jaxq.eager.conversion import swap_module
    from jaxq.quantization_mappings import resolve_module_class
    if resolve_module_class(mapping.get(type(module)), module) is None:
        return _swap_fused_reference(module, mapping, qconfig)
    work = nnx.clone(module)
    if getattr(work, "qconfig", None) is None:
        work.qconfig = qconfig
    work.activation_post_process = observer
    swapped = swap_module(work, mapping, {})
    return None if swapped is work else swapped


def convert_graph_module(gm: GraphModule, is_reference: bool = False,
                         qconfig_mapping: Any = None) -> GraphModule:
    """A new quantized GraphModule from an observed one (``gm`` is unchanged).

    Args:
      gm: the output of :func:`jaxq.fx.prepare.prepare_graph_module`, calibrated.
      is_reference: produce torch's reference representation.
      qconfig_mapping: optional mapping used to turn patterns back to float: a node whose
        qconfig under this mapping is None is not converted (torch's convert-time
        ``qconfig_mapping``, which may only set entries to None).
    """
    from jaxq.fx.match import node_qconfig
    from jaxq.fx.fuse import module_type_getter
    root = nnx.clone(gm.root)
    graph = gm.graph.copy()
    by_id = graph.by_id()
    mapping = _module_mapping(is_reference)
    module_type_of = module_type_getter(root)
    if qconfig_mapping is not None:
        for node in graph.nodes:
            if node.op == "get_attr":
                node.meta["node_qconfig"] = _get_attr_qconfig(qconfig_mapping, root, node)
            elif node.op in ("call_module", "call_function", "call_method") \
                    and not node.meta.get("observer"):
                resolved = node_qconfig(qconfig_mapping, node, module_type_of(node))
                node.meta["node_qconfig"] = resolved
                if resolved is None and node.meta.get("qconfig") is not None:
                    _drop_quantization(node, by_id)
    users: dict[int, list[Node]] = {}
    for node in graph.nodes:
        for arg in node.args:
            if isinstance(arg, Ref):
                users.setdefault(arg.node_id, []).append(node)

    def none_qconfig(node: Node) -> bool:
        # torch's node_name_to_qconfig has None for placeholders and the output.
        if node.op in ("placeholder", "output"):
            return True
        return "node_qconfig" in node.meta and node.meta["node_qconfig"] is None

    next_id = graph.next_id()
    qdtype: dict[tuple[int, int], Any] = {}   # quantized values -> their dtype
    redirect: dict[tuple[int, int], Ref] = {}
    dequantized: dict[tuple[int, int], Ref] = {}
    removed_observer_paths: set[str] = set()
    swapped_paths: set[str] = set()
    float_paths: set[str] = set()
    qat_weight_fake_quants: dict[str, Any] = {}  # QAT modules turned float -> fake-quant
    nodes: list[Node] = []

    def resolve(arg: Any) -> Any:
        if isinstance(arg, Ref):
            return redirect.get((arg.node_id, arg.index), arg)
        return arg

    def as_float(arg: Any) -> Any:
        nonlocal next_id
        if not isinstance(arg, Ref) or (arg.node_id, arg.index) not in qdtype:
            return arg
        key = (arg.node_id, arg.index)
        if key not in dequantized:
            dq = Node(id=next_id, op="call_function", target=dequantize_value,
                      name=f"dequantize_{next_id}", args=(arg,),
                      meta={"function": dequantize_value, "dequantize": True,
                            "avals": by_id[arg.node_id].meta.get("avals", (None,))[
                                arg.index:arg.index + 1]})
            next_id += 1
            nodes.append(dq)
            by_id[dq.id] = dq
            dequantized[key] = Ref(dq.id)
        return dequantized[key]

    def observer_after(node: Node) -> Any:
        obs_id = node.meta.get("output_observer")
        if obs_id is None:
            return None
        obs_node = by_id[obs_id]
        return get_submodule(gm.root, obs_node.module_path)

    for node in graph.nodes:
        if node.meta.get("removed"):
            continue
        node.args = tuple(resolve(a) for a in node.args)
        if node.op == "output":
            node.args = tuple(as_float(a) for a in node.args)
            nodes.append(node)
            continue
        if node.meta.get("observer"):
            removed_observer_paths.add(node.module_path)
            (value,) = node.args
            observer = get_submodule(gm.root, node.module_path)
            dtype = qd.as_quant_dtype(observer.dtype) \
                if _observer_dtype_ok(observer) else None
            have = qdtype.get((value.node_id, value.index))
            if all(none_qconfig(n) for n in [by_id[value.node_id], *users.get(node.id, [])]):
                # torch: an observer whose producer and consumers all have a None qconfig
                # is removed rather than turned into quantize / dequantize.
                dtype = None
            if dtype is None:
                redirect[(node.id, 0)] = as_float(value) if have is not None else value
                continue
            if have == dtype:
                redirect[(node.id, 0)] = value
                continue
            fn, qparams = quantize_node_function(observer)
            converted = node.replace(op="call_function", target=_quantize,
                                     name=f"quantize_{node.id}", args=(as_float(value),),
                                     module_path="")
            converted.meta = {"function": fn, "quantize": True, "qparams": qparams,
                              "avals": node.meta.get("avals"), "observer_type": node.target}
            if isinstance(node.meta.get(CUSTOM_META_KEY), dict):
                # The observer's custom meta (its numeric debug handle) goes to the node
                # that replaces it, as torch's convert keeps it; a copy, since Node.replace
                # shares ``meta`` values with the prepared graph.
                converted.meta[CUSTOM_META_KEY] = dict(node.meta[CUSTOM_META_KEY])
            nodes.append(converted)
            by_id[converted.id] = converted
            qdtype[(node.id, 0)] = dtype
            continue
        if node.meta.get("dynamic") and node.op == "call_module":
            _swap_dynamic(node, root, is_reference)
            node.args = tuple(as_float(a) for a in node.args)
            nodes.append(node)
            continue
        pattern_nodes = node.meta.get("pattern_nodes")
        if pattern_nodes and node.id == pattern_nodes[0] and not is_reference \
                and not (node.op == "call_module" and node.module_path in float_paths):
            done = _lower_pattern(node, pattern_nodes, root, by_id, mapping, qdtype,
                                  observer_after, redirect, swapped_paths)
            if done:
                nodes.append(node)
                continue
        if is_reference and node.op == "call_module" \
                and node.module_path not in float_paths:
            module = get_submodule(root, node.module_path)
            if _is_qat_module(module):
                # torch's convert_weighted_module: a QAT module always becomes its float
                # module (to_float; batch norm folded), keeping its weight fake-quant for
                # the reference module's weight qparams.
                qat_weight_fake_quants[node.module_path] = module.weight_fake_quant
                float_module = module.to_float()
                set_submodule(root, node.module_path, float_module)
                node.target = type(float_module)
        if pattern_nodes and node.id == pattern_nodes[0] and is_reference \
                and node.op == "call_module":
            module = get_submodule(root, node.module_path)
            observer = observer_after(by_id[pattern_nodes[-1]])
            if observer is not None:
                if node.module_path in qat_weight_fake_quants:
                    swapped = _qat_reference(
                        module, qat_weight_fake_quants.pop(node.module_path), mapping)
                else:
                    swapped = _swap(module, observer, mapping, node.meta.get("qconfig"))
                if swapped is not None:
                    set_submodule(root, node.module_path, swapped)
                    node.target = type(swapped)
        if node.op == "call_module":
            # A module also called on this float path must stay float for later calls.
            float_paths.add(node.module_path)
        node.args = tuple(as_float(a) for a in node.args)
        nodes.append(node)
    for path in removed_observer_paths:
        if path in vars(root) and not any(n.op == "call_module" and n.module_path == path
                                          for n in nodes):
            delattr(root, path)
    converted_graph = Graph(nodes, graph.in_tree, graph.out_tree, graph.meta)
    converted_graph.meta["stage"] = "converted"
    converted_graph.meta["is_reference"] = is_reference
    return GraphModule(root, converted_graph)


def _get_attr_qconfig(qconfig_mapping: Any, root: nnx.Module, node: Node) -> Any:
    """torch: a get_attr node takes the qconfig of the module owning the attribute."""
    try:
        owner = get_submodule(root, node.module_path)
    except ValueError:
        owner = root
    return qconfig_mapping.qconfig_for_module(node.module_path, type(owner))


def _swap_fused_reference(module: Any, mapping: dict, qconfig: Any) -> Any:
    """torch's ``convert_weighted_module`` for a fused container in the reference path.

    A ``jaxq.nn.intrinsic`` fused module (``LinearReLU``, ``ConvReLU2d``, ...) whose first
    child has a reference quantized class in ``mapping`` becomes a copy of the container
    whose first child is that reference module (``nni.LinearReLU(nnqr.Linear, ReLU)``),
    with the weight qparams of ``qconfig.weight`` observed on the child's kernel, as
    eager ``convert(is_reference=True)`` computes them. None otherwise (the module then
    stays float, as before).

    The reference child is assigned into a copy of the container, as torch assigns
    ``fused_module[0] = ref_qmodule``: the constructor's type check wants the float child.
    """
    from jaxq.eager.conversion import _weight_qparams
    from jaxq.nn.intrinsic.fused import _FusedModule
    from jaxq.quantization_mappings import resolve_module_class
    if not isinstance(module, _FusedModule) or len(module) == 0:
        return None
    if getattr(module, "qconfig", None) is not None:
        qconfig = module.qconfig
    first = module[0]
    reference_cls = resolve_module_class(mapping.get(type(first)), first)
    if qconfig is None or reference_cls is None \
            or not getattr(reference_cls, "_IS_REFERENCE", False):
        return None
    work = nnx.clone(first)
    work.qconfig = qconfig
    reference = reference_cls.from_float(work, _weight_qparams(work, reference_cls))
    fused = nnx.clone(module)
    fused.layers[0] = reference
    return fused


def _is_qat_module(module: Any) -> bool:
    """A QAT module (``jaxq.nn.qat`` / ``jaxq.nn.intrinsic.qat``): it fake-quantizes its
    weight and converts back with ``to_float``."""
    return getattr(module, "weight_fake_quant", None) is not None \
        and callable(getattr(module, "to_float", None))


def _qat_reference(float_module: Any, weight_fake_quant: Any, mapping: dict) -> Any:
    """torch's ``convert_weighted_module`` for a QAT module already turned float.

    ``float_module`` is the QAT module's ``to_float()`` (``nnx.Linear`` / ``nnx.Conv``
    with the batch norm folded in for ``ConvBn*``, or a fused container such as
    ``nni.ConvReLU2d`` / ``nni.LinearReLU``). As torch, the QAT module's own
    ``weight_fake_quant`` is run once more on the float weight (its observer sees the
    folded kernel) and its ``calculate_qparams()`` give the weight qparams of the
    reference module; a fused container gets the reference module as its first child.
    None (the module then stays float) when the weight is not quantized or there is no
    reference class for it.
    """
    from jaxq.eager.conversion import _qparam_dict
    from jaxq.nn.intrinsic.fused import _FusedModule
    from jaxq.quantization_mappings import resolve_module_class
    fused = float_module if isinstance(float_module, _FusedModule) else None
    first = float_module[0] if fused is not None else float_module
    reference_cls = resolve_module_class(mapping.get(type(first)), first)
    if reference_cls is None or not getattr(reference_cls, "_IS_REFERENCE", False):
        return None
    weight_fake_quant(first.kernel.get_value())
    weight_qparams = _qparam_dict(weight_fake_quant)
    if weight_qparams.get("qscheme") is None:
        return None
    reference = reference_cls.from_float(first, weight_qparams)
    if fused is None:
        return reference
    fused.layers[0] = reference  # a fresh container from to_float(): not shared
    return fused


def _swap_dynamic(node: Node, root: nnx.Module, is_reference: bool) -> None:
    """Dynamic quantization: the module becomes its ``jaxq.nn.quantized.dynamic``
    counterpart (float in, float out; activations quantized per call)."""
    from jaxq.eager.conversion import swap_module
    from jaxq.quantization_mappings import get_default_dynamic_quant_module_mappings
    del is_reference  # the dynamic modules are the reference numerics too (see below)
    mapping = get_default_dynamic_quant_module_mappings()
    module = get_submodule(root, node.module_path)
    work = nnx.clone(module)
    work.qconfig = node.meta["qconfig"]
    swapped = swap_module(work, mapping, {})
    if swapped is not work:
        set_submodule(root, node.module_path, swapped)
        node.meta["float_module_type"] = node.target
        node.target = type(swapped)


def _abstract_qtensor(aval: Any, dtype: Any) -> Any:
    import jax

    from jaxq.core.qscheme import QScheme
    from jaxq.core.qtensor import QTensor
    return QTensor.tree_unflatten(
        (dtype, QScheme.per_tensor_affine, None, None),
        (jax.ShapeDtypeStruct(aval.shape, dtype.storage_dtype),
         jax.ShapeDtypeStruct((), jnp.float32), jax.ShapeDtypeStruct((), jnp.int32)))


def _accepts(module: Any, node: Node, aval: Any, dtype: Any) -> bool:
    import jax
    graphdef, state = nnx.split(module)
    record = node.meta.get("call")
    try:
        def run(st, q):
            m = nnx.merge(graphdef, st)
            if record is None:
                return m(q)
            leaves = list(record.static_leaves)
            leaves[record.dynamic_positions[0]] = q
            args, kwargs = jax.tree.unflatten(record.arg_tree, leaves)
            return m(*args, **kwargs)
        jax.eval_shape(run, state, _abstract_qtensor(aval, dtype))
    except (TypeError, ValueError):
        return False
    return True


def _checked_for_input(swapped: Any, module: Any, observer: Any, node: Node, aval: Any,
                       dtype: Any) -> Any:
    """``swapped`` if it runs on the node's input shape; else the same family's class for
    that rank (BatchNorm2d -> BatchNorm3d for 5-d inputs); else None (the node then runs
    in floating point, as torch leaves e.g. a BatchNorm1d float)."""
    if aval is None or len(node.input_ids) != 1 or _accepts(swapped, node, aval, dtype):
        return swapped
    import importlib
    import re
    name = type(swapped).__name__
    match = re.fullmatch(r"(.*?)([123])d", name)
    if match is None:
        return None
    family = importlib.import_module(type(swapped).__module__)
    alternative = getattr(family, f"{match.group(1)}{len(aval.shape) - 2}d", None)
    if alternative is None:
        return None
    work = nnx.clone(module)
    if getattr(work, "qconfig", None) is None:
        work.qconfig = node.meta.get("qconfig")
    work.activation_post_process = observer
    try:
        candidate = alternative.from_float(work)
    except (TypeError, ValueError):
        return None
    return candidate if _accepts(candidate, node, aval, dtype) else None


def _observer_dtype_ok(observer: Any) -> bool:
    try:
        dtype = qd.as_quant_dtype(getattr(observer, "dtype", None))
    except (TypeError, ValueError):
        return False
    return dtype in OBSERVED_DTYPES and not getattr(observer, "is_dynamic", False)


def _drop_quantization(node: Node, by_id: dict[int, Node]) -> None:
    for key in ("qconfig", "pattern_config", "pattern_nodes"):
        node.meta.pop(key, None)


def _lower_pattern(node: Node, pattern_nodes: tuple, root: nnx.Module, by_id: dict,
                   mapping: dict, qdtype: dict, observer_after, redirect: dict,
                   swapped_paths: set) -> bool:
    """Replaces a quantized pattern by a quantized kernel; False when there is none."""
    last = by_id[pattern_nodes[-1]]
    observer = observer_after(last)
    if observer is None or not _observer_dtype_ok(observer):
        return False
    tensor_args = [a for a in node.args if isinstance(a, Ref)]
    if not tensor_args or any((a.node_id, a.index) not in qdtype for a in tensor_args):
        return False
    out_dtype = qd.as_quant_dtype(observer.dtype)
    if node.op == "call_module" and len(pattern_nodes) == 1:
        module = get_submodule(root, node.module_path)
        if node.module_path in swapped_paths:
            # A module called more than once is converted at its first call; later calls
            # reuse it (and its output qparams), as torch's convert does.
            node.target = type(module)
            qdtype[(node.id, 0)] = out_dtype
            return True
        swapped = _swap(module, observer, mapping, node.meta.get("qconfig"))
        if swapped is None:
            return False
        input_ref = tensor_args[0]
        input_aval = by_id[input_ref.node_id].meta.get("avals", (None,))[input_ref.index]
        swapped = _checked_for_input(swapped, module, observer, node, input_aval,
                                     qdtype[(input_ref.node_id, input_ref.index)])
        if swapped is None:
            return False
        swapped_paths.add(node.module_path)
        set_submodule(root, node.module_path, swapped)
        node.meta["float_module_type"] = node.target
        node.target = type(swapped)
        qdtype[(node.id, 0)] = out_dtype
        return True
    if node.op == "call_function" and len(tensor_args) == 2 and len(node.args) == 2:
        import jax
        relu = len(pattern_nodes) == 2 and last.target is jax.nn.relu
        if len(pattern_nodes) > 2 or (len(pattern_nodes) == 2 and not relu):
            return False
        fn = _binary_function(node.target, relu)
        if fn is None or "call" in node.meta:
            return False
        _, qparams = quantize_node_function(observer)
        node.meta["function"] = functools.partial(_quantized_binary, fn, qparams["scale"],
                                                  qparams["zero_point"])
        node.meta["quantized_op"] = fn
        qdtype[(node.id, 0)] = out_dtype
        if relu:
            node.meta["fused_relu"] = last.id
            redirect[(last.id, 0)] = Ref(node.id)
            last.meta["removed"] = True
        return True
    return False
