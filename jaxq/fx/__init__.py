"""Graph-mode quantization (``torch.ao.quantization.fx``) for Flax models.

:mod:`jaxq.fx.graph` captures an NNX model into a :class:`~jaxq.fx.graph.Graph` (the
analogue of FX symbolic tracing; :mod:`jaxq.fx.tracing` holds the tracer) and
:mod:`jaxq.fx.linen` captures a linen model (``module.apply``); :mod:`jaxq.fx.match`,
:mod:`jaxq.fx.fuse`, :mod:`jaxq.fx.prepare` and :mod:`jaxq.fx.convert` are the graph
passes behind the workflows in :mod:`jaxq.quantize_fx`.
"""

from jaxq.fx.graph import Graph, GraphModule, Node, Ref, capture, interpret
from jaxq.fx.linen import capture_linen

__all__ = ["Graph", "GraphModule", "Node", "Ref", "capture", "capture_linen", "interpret"]
