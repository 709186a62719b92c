"""Lowering a reference-quantized graph to jaxq's int8 kernels (torch's x86 lowering).

``torch.ao.quantization.pt2e.lowering.lower_pt2e_quantized_to_x86`` takes a PT2E model in
the reference representation (``dequantize -> float op -> quantize`` around every
quantized op) and lets inductor's freezing passes fuse those patterns into oneDNN int8
ops. jaxq's analogue rewrites the same patterns of a graph from
:func:`jaxq.quantize_fx.convert_to_reference_fx` into jaxq's native quantized modules and
ops, which run on :mod:`jaxq.kernels` (int8 x int8 -> int32 GEMM / conv with a fused
requantize):

* ``quantize -> dequantize -> M -> quantize`` where ``M`` is a reference quantized
  module (``jaxq.nn.quantized.reference.Linear`` / ``Conv{1,2,3}d`` /
  ``ConvTranspose{1,2,3}d``) becomes ``quantize -> Q`` with
  ``Q = jaxq.nn.quantized.<M>.from_reference(M, output scale, output zero point)``; a
  fused ``jaxq.nn.intrinsic`` ``LinearReLU`` / ``ConvReLU{1,2,3}d`` whose first layer is
  a reference module becomes the ``jaxq.nn.intrinsic.quantized`` module;
* ``dequantize(a), dequantize(b) -> add | mul [-> relu] -> quantize`` becomes
  ``jaxq.nn.quantized.ops.add`` / ``add_relu`` / ``mul`` / ``mul_relu`` on the two
  quantized values with the output qparams.

The lowered node keeps the id and ``meta`` of the float op it replaces (numeric debug
handles included), so :mod:`jaxq.pt2e.numeric_debugger` compares it with the float model;
an add / mul that absorbed a relu takes the relu's handle, since it computes the relu's
output.
Every other node is left as it is (it keeps running in floating point between its
``dequantize`` / ``quantize``, as torch leaves ops inductor does not fuse).

Deviations from torch: the result is a jaxq GraphModule (torch returns the
re-exported, constant-folded module); ``example_inputs`` is used to check that the lowered
model computes outputs of the same shapes and dtypes (torch re-exports with it).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxq.core import dtypes as qd
from jaxq.eager._tree import get_submodule, set_submodule
from jaxq.fx.graph import Graph, GraphModule, Node, Ref
from jaxq.pt2e.numeric_debugger import (
    CUSTOM_KEY,
    NUMERIC_DEBUG_HANDLE_KEY,
    numeric_debug_handle,
)

__all__ = ["lower_pt2e_quantized_to_x86"]


def _module_lowerings() -> dict[type, tuple[type | None, type]]:
    """``{module type: (reference type of its first layer or None, quantized type)}``."""
    from jaxq.nn import intrinsic as nni
    from jaxq.nn import quantized as nnq
    from jaxq.nn.intrinsic import quantized as nniq
    from jaxq.nn.quantized import reference as nnqr
    lowerings: dict[type, tuple[type | None, type]] = {
        nnqr.Linear: (None, nnq.Linear),
        nnqr.Conv1d: (None, nnq.Conv1d),
        nnqr.Conv2d: (None, nnq.Conv2d),
        nnqr.Conv3d: (None, nnq.Conv3d),
        nnqr.ConvTranspose1d: (None, nnq.ConvTranspose1d),
        nnqr.ConvTranspose2d: (None, nnq.ConvTranspose2d),
        nnqr.ConvTranspose3d: (None, nnq.ConvTranspose3d),
        # torch's STATIC_LOWER_FUSED_MODULE_MAP: a fused container of a reference module.
        nni.LinearReLU: (nnqr.Linear, nniq.LinearReLU),
        nni.ConvReLU1d: (nnqr.Conv1d, nniq.ConvReLU1d),
        nni.ConvReLU2d: (nnqr.Conv2d, nniq.ConvReLU2d),
        nni.ConvReLU3d: (nnqr.Conv3d, nniq.ConvReLU3d),
    }
    return lowerings


def _binary_ops() -> dict[tuple[Any, bool], Any]:
    from jaxq.nn.quantized import ops
    return {(operator.add, False): ops.add, (operator.add, True): ops.add_relu,
            (operator.mul, False): ops.mul, (operator.mul, True): ops.mul_relu}


def _quantized_binary(op: Any, scale: np.ndarray, zero_point: np.ndarray, a: Any,
                      b: Any) -> Any:
    return op(a, b, scale, zero_point)


def _is_quantize(node: Node | None) -> bool:
    return node is not None and bool(node.meta.get("quantize")) and "qparams" in node.meta


def _is_dequantize(node: Node | None) -> bool:
    return node is not None and bool(node.meta.get("dequantize"))


class _Rewriter:
    """Pattern matching state over one graph copy."""

    def __init__(self, graph: Graph, root: nnx.Module):
        self.graph = graph
        self.root = root
        self.by_id = graph.by_id()
        self.removed: set[int] = set()
        # node id -> quantized dtype of its output (quantize nodes and lowered nodes)
        self.qdtype: dict[int, Any] = {n.id: n.meta["qparams"]["dtype"]
                                       for n in graph.nodes if _is_quantize(n)}

    def users(self, node: Node) -> list[Node]:
        return [n for n in self.graph.nodes
                if n.id not in self.removed and node.id in n.input_ids]

    def only_user(self, node: Node) -> Node | None:
        users = self.users(node)
        return users[0] if len(users) == 1 else None

    def quantized_source(self, arg: Any) -> Ref | None:
        """For ``arg`` = dequantize(x), x a quint8 value: the Ref to x (the int8 kernels
        take quint8 activations, as torch's x86 ones)."""
        if not isinstance(arg, Ref):
            return None
        dq = self.by_id.get(arg.node_id)
        if not _is_dequantize(dq) or len(dq.args) != 1 or not isinstance(dq.args[0], Ref):
            return None
        source = dq.args[0]
        return source if self.qdtype.get(source.node_id) == qd.quint8 else None

    def output_quantize(self, node: Node) -> Node | None:
        user = self.only_user(node)
        return user if _is_quantize(user) and self.qdtype[user.id] == qd.quint8 else None

    def replace_uses(self, old: Node, new: Node) -> None:
        for n in self.graph.nodes:
            if old.id in n.input_ids:
                n.args = tuple(Ref(new.id, a.index) if isinstance(a, Ref)
                               and a.node_id == old.id else a for a in n.args)

    def drop_unused_dequantize(self) -> None:
        """Removes dequantize nodes nothing reads any more."""
        for node in list(self.graph.nodes):
            if _is_dequantize(node) and node.id not in self.removed and not self.users(node):
                self.removed.add(node.id)

    def lower_module(self, node: Node, lowerings: dict) -> bool:
        module = get_submodule(self.root, node.module_path, "module_path")
        lowering = lowerings.get(type(module))
        if lowering is None:
            return False
        inner_type, quantized_type = lowering
        reference = module
        if inner_type is not None:
            layers = list(getattr(module, "layers", []))
            if not layers or type(layers[0]) is not inner_type:
                return False
            reference = layers[0]
        refs = [a for a in node.args if isinstance(a, Ref)]
        calls = [n for n in self.graph.nodes
                 if n.op == "call_module" and n.module_path == node.module_path]
        if len(refs) != 1 or len(calls) != 1:
            return False
        source = self.quantized_source(refs[0])
        q_out = self.output_quantize(node)
        if source is None or q_out is None:
            return False
        qparams = q_out.meta["qparams"]
        lowered = quantized_type.from_reference(reference, qparams["scale"],
                                                qparams["zero_point"])
        set_submodule(self.root, node.module_path, lowered)
        node.meta["lowered_from"] = type(module)
        node.target = type(lowered)
        node.args = tuple(source if a is refs[0] else a for a in node.args)
        self.finish(node, q_out)
        return True

    def lower_binary(self, node: Node, ops: dict) -> bool:
        if node.op != "call_function" or node.target not in (operator.add, operator.mul) \
                or len(node.args) != 2 or "call" in node.meta:
            return False
        sources = [self.quantized_source(a) for a in node.args]
        if any(s is None for s in sources):
            return False
        relu = None
        after = self.only_user(node)
        if after is not None and after.target is jax.nn.relu:
            relu = after
            after = self.only_user(relu)
        if not _is_quantize(after):
            return False
        qparams = after.meta["qparams"]
        op = ops[(node.target, relu is not None)]
        node.meta["function"] = functools.partial(_quantized_binary, op, qparams["scale"],
                                                  qparams["zero_point"])
        node.meta["lowered_from"] = node.target
        node.args = tuple(sources)
        if relu is not None:
            node.meta["fused_relu"] = relu.id
            self.removed.add(relu.id)
            # The node now computes relu's output: it answers for relu's debug handle.
            relu_handle = numeric_debug_handle(relu)
            if relu_handle is not None:
                custom = dict(node.meta.get(CUSTOM_KEY) or {})
                custom[NUMERIC_DEBUG_HANDLE_KEY] = relu_handle
                node.meta[CUSTOM_KEY] = custom
        self.finish(node, after)
        return True

    def finish(self, node: Node, q_out: Node) -> None:
        """``node`` now returns ``q_out``'s quantized value: users of q_out read it."""
        self.removed.add(q_out.id)
        self.qdtype[node.id] = self.qdtype[q_out.id]
        self.replace_uses(q_out, node)
        self.drop_unused_dequantize()


def _output_structs(model: Any, example_inputs: tuple) -> list:
    out = jax.eval_shape(lambda *a: model(*a), *example_inputs)
    return [(tuple(s.shape), s.dtype) for s in jax.tree.leaves(out)]


def lower_pt2e_quantized_to_x86(model: GraphModule, example_inputs: tuple) -> GraphModule:
    """Lowers a reference-quantized model's q/dq patterns to jaxq's int8 modules / ops.

    Args:
      model: a :class:`jaxq.fx.graph.GraphModule` from
        :func:`jaxq.quantize_fx.convert_to_reference_fx` (not modified). A model from
        :func:`jaxq.quantize_fx.convert_fx` is accepted too: it is already lowered, so the
        result computes the same thing.
      example_inputs: tuple of positional inputs; the lowered model must produce outputs
        of the same shapes and dtypes on them.

    Returns:
      A new GraphModule: Linear / Conv / ConvTranspose (+ReLU) reference modules between
      ``dequantize`` and ``quantize`` are ``jaxq.nn.quantized`` /
      ``jaxq.nn.intrinsic.quantized`` modules taking and returning QTensors, and
      quantized add / mul (+relu) use ``jaxq.nn.quantized.ops``.

    Raises:
      TypeError: ``model`` is not a captured GraphModule, or ``example_inputs`` is not a
        tuple.
      ValueError: ``model`` has no quantize node (it was not converted).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxq.qconfig import default_qconfig
      >>> from jaxq.qconfig_mapping import QConfigMapping
      >>> from jaxq.quantize_fx import convert_to_reference_fx, prepare_fx
      >>> model = nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)))
      >>> x = jax.random.normal(jax.random.key(0), (5, 4))
      >>> prepared = prepare_fx(model, QConfigMapping().set_global(default_qconfig), (x,))
      >>> _ = prepared(x)
      >>> reference = convert_to_reference_fx(prepared)
      >>> lowered = lower_pt2e_quantized_to_x86(reference, (x,))
      >>> type(lowered.root.layers[0]).__module__
      'jaxq.nn.quantized.linear'
    """
    if not isinstance(model, GraphModule):
        raise TypeError("model must be the jaxq.fx.GraphModule returned by "
                        "convert_to_reference_fx / convert_fx; got "
                        f"{type(model).__name__}")
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of positional inputs; got "
                        f"{type(example_inputs).__name__}")
    if not any(_is_quantize(n) for n in model.graph.nodes):
        raise ValueError("model has no quantize node: lower a model converted with "
                         "jaxq.quantize_fx.convert_to_reference_fx (after prepare_fx and "
                         "calibration)")
    root = nnx.clone(model.root)
    graph = model.graph.copy()
    rewriter = _Rewriter(graph, root)
    lowerings = _module_lowerings()
    ops = _binary_ops()
    for node in list(graph.nodes):
        if node.id in rewriter.removed:
            continue
        if node.op == "call_module":
            rewriter.lower_module(node, lowerings)
        elif node.op == "call_function":
            rewriter.lower_binary(node, ops)
    nodes = [n for n in graph.nodes if n.id not in rewriter.removed]
    lowered_graph = Graph(nodes, graph.in_tree, graph.out_tree, dict(graph.meta))
    lowered_graph.meta["stage"] = "converted"
    lowered_graph.meta["is_reference"] = False
    lowered_graph.meta["lowered"] = "x86"
    lowered = GraphModule(root, lowered_graph)
    expected = _output_structs(model, example_inputs)
    got = _output_structs(lowered, example_inputs)
    if expected != got:
        raise ValueError(f"lowering changed the model's outputs on example_inputs: "
                         f"{expected} became {got}")
    return lowered
