"""PT2E utilities for captured models (``torch.ao.quantization.pt2e`` / torchao's ``pt2e``).

* the numeric debugger (:mod:`jaxq.pt2e.numeric_debugger`, :mod:`jaxq.pt2e.comparison`):
  :func:`generate_numeric_debug_handle`, :func:`prepare_for_propagation_comparison`,
  :func:`extract_results_from_loggers`, :func:`compare_results`, ``CUSTOM_KEY``,
  ``NUMERIC_DEBUG_HANDLE_KEY``;
* export utilities (:mod:`jaxq.pt2e.export_utils`): :func:`model_is_exported`,
  ``move_exported_model_to_eval`` / ``_to_train``, ``allow_exported_model_train_eval``,
  :class:`WrapperModule`;
* the x86 lowering (:mod:`jaxq.pt2e.lowering`): :func:`lower_pt2e_quantized_to_x86`
  rewrites a reference-quantized graph's ``dequantize -> op -> quantize`` patterns into
  jaxq's int8 modules and ops.

"Exported" models are the graph modules of :func:`jaxq.fx.graph.capture` and the models
graph-mode prepare / convert build from them.
"""

from jaxq.pt2e.comparison import (
    NodeAccuracySummary,
    QuantizationComparisonResult,
    compare_results,
    compute_cosine_similarity,
    compute_mse_loss,
    compute_normalized_l2_error,
    compute_sqnr,
)
from jaxq.pt2e.export_utils import (
    WrapperModule,
    allow_exported_model_train_eval,
    model_is_exported,
    move_exported_model_to_eval,
    move_exported_model_to_train,
)
from jaxq.pt2e.lowering import lower_pt2e_quantized_to_x86
from jaxq.pt2e.numeric_debugger import (
    CUSTOM_KEY,
    NUMERIC_DEBUG_HANDLE_KEY,
    LoggingGraphModule,
    OutputLogger,
    extract_results_from_loggers,
    generate_numeric_debug_handle,
    numeric_debug_handle,
    prepare_for_propagation_comparison,
    transfer_numeric_debug_handles,
)

__all__ = [
    "CUSTOM_KEY", "NUMERIC_DEBUG_HANDLE_KEY", "generate_numeric_debug_handle",
    "numeric_debug_handle", "transfer_numeric_debug_handles",
    "prepare_for_propagation_comparison",
    "extract_results_from_loggers", "compare_results", "OutputLogger", "LoggingGraphModule",
    "QuantizationComparisonResult", "NodeAccuracySummary", "compute_sqnr",
    "compute_mse_loss", "compute_normalized_l2_error", "compute_cosine_similarity",
    "model_is_exported", "WrapperModule", "move_exported_model_to_eval",
    "move_exported_model_to_train", "allow_exported_model_train_eval",
    "lower_pt2e_quantized_to_x86",
]
