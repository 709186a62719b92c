"""Graph-mode quantization (``torch.ao.quantization.fx``) for Flax NNX models.

:mod:`jaxq.fx.graph` captures a model into a :class:`~jaxq.fx.graph.Graph` (the analogue of
FX symbolic tracing); the workflows are in :mod:`jaxq.quantize_fx`.
"""

from jaxq.fx.graph import Graph, GraphModule, Node, Ref, capture, interpret

__all__ = ["Graph", "GraphModule", "Node", "Ref", "capture", "interpret"]
