"""``torch.ao.quantization.quantization_mappings`` with Flax / jaxq module classes.

Which float module becomes which QAT, quantized or reference module in the eager
workflow. Keys are the float classes jaxq models use: Flax's own layers (``nnx.Linear``,
``nnx.Conv``, ``nnx.ConvTranspose``, ``nnx.BatchNorm``, ``nnx.Embed``, ...), the activation
modules of :mod:`jaxq.nn.modules`, the stubs, and the ``jaxq.nn.intrinsic`` /
``jaxq.nn.qat`` classes; values are ``jaxq.nn`` classes named as in torch.

Flax's ``nnx.Conv`` (and ``nnx.ConvTranspose``) covers torch's Conv1d/2d/3d, so its value is
a :class:`~jaxq.backend_config.type_names.ByRank` choosing by ``len(kernel_size)``
(:func:`resolve_module_class`); a rank missing from the ByRank (torch has no
``qat.Conv1d`` entry) means "not mapped", exactly as torch leaves ``nn.Conv1d`` out of its
QAT mapping. Flax's ``nnx.BatchNorm`` / ``nnx.InstanceNorm`` carry no rank at all; they map
to the 2-d quantized class (pass a custom ``mapping`` for 3-d).

torch entries whose Flax or jaxq counterpart does not exist are listed in
:data:`UNAVAILABLE_MAPPINGS` with the reason (nothing is dropped silently).

Example:
  >>> from flax import nnx
  >>> import jaxq.nn.quantized as nnq
  >>> get_default_static_quant_module_mappings()[nnx.Linear] is nnq.Linear
  True
  >>> conv = nnx.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0))
  >>> resolve_module_class(get_default_static_quant_module_mappings()[nnx.Conv], conv) \\
  ...     is nnq.Conv2d
  True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxq.backend_config.type_names import ByRank, import_object

__all__ = [
    "DEFAULT_REFERENCE_STATIC_QUANT_MODULE_MAPPINGS",
    "DEFAULT_STATIC_QUANT_MODULE_MAPPINGS",
    "DEFAULT_QAT_MODULE_MAPPINGS",
    "DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS",
    "DEFAULT_FLOAT_TO_QUANTIZED_OPERATOR_MAPPINGS",
    "DEFAULT_MODULE_TO_ACT_POST_PROCESS",
    "UNAVAILABLE_MAPPINGS",
    "no_observer_set",
    "get_default_static_quant_module_mappings",
    "get_default_static_quant_reference_module_mappings",
    "get_embedding_static_quant_module_mappings",
    "get_static_quant_module_class",
    "get_dynamic_quant_module_class",
    "get_default_qat_module_mappings",
    "get_embedding_qat_module_mappings",
    "get_default_dynamic_quant_module_mappings",
    "get_default_qconfig_propagation_list",
    "get_default_compare_output_module_list",
    "get_default_float_to_quantized_operator_mappings",
    "get_quantized_operator",
    "resolve_module_class",
    "mapping_classes",
]

UNAVAILABLE_MAPPINGS: dict[str, str] = {}
"""``"<table>: <key> -> <value>"`` -> why jaxq has no such entry."""

_NNQ = "jaxq.nn.quantized."
_NNQR = "jaxq.nn.quantized.reference."
_NNQD = "jaxq.nn.quantized.dynamic."
_NNI = "jaxq.nn.intrinsic."
_NNIQ = "jaxq.nn.intrinsic.quantized."
_NNIQD = "jaxq.nn.intrinsic.quantized.dynamic."
_NNIQAT = "jaxq.nn.intrinsic.qat."
_NNQAT = "jaxq.nn.qat."
_NNQATD = "jaxq.nn.qat.dynamic."
_STUBS = "jaxq.eager.stubs."
_NN = "jaxq.nn."
_FLAX = "flax.nnx."


def _import(path: str) -> Any:
    try:
        return import_object(path)
    except LookupError:
        return None


def _ranked(template: str, ranks=(1, 2, 3)) -> dict[int, str]:
    return {rank: template.format(r=rank) for rank in ranks}


_PROPAGATION_KEYS: set[Any] = set()
"""Every existing float class torch's mappings name (also those whose jaxq counterpart is
missing): torch's propagation list is built from the mapping keys."""


def _build(table: str, entries: list[tuple[str | None, Any]],
           missing_key_notes: dict[str, str] | None = None,
           propagation: bool = True) -> dict[Any, Any]:
    """Resolves ``(key_path, value_path | {rank: value_path})`` entries; records misses."""
    mapping: dict[Any, Any] = {}
    for key_path, value_spec in entries:
        key = _import(key_path)
        if key is not None and propagation:
            _PROPAGATION_KEYS.add(key)
        if key is None:
            UNAVAILABLE_MAPPINGS[f"{table}: {key_path}"] = (
                (missing_key_notes or {}).get(key_path, f"{key_path} does not exist"))
            continue
        if isinstance(value_spec, dict):
            resolved = {rank: _import(path) for rank, path in value_spec.items()}
            for rank, path in value_spec.items():
                if resolved[rank] is None:
                    UNAVAILABLE_MAPPINGS[f"{table}: {key_path} (rank {rank}) -> {path}"] = (
                        f"{path} does not exist")
            resolved = {rank: cls for rank, cls in resolved.items() if cls is not None}
            if resolved:
                mapping[key] = ByRank.from_dict(resolved)
        else:
            value = _import(value_spec)
            if value is None:
                UNAVAILABLE_MAPPINGS[f"{table}: {key_path} -> {value_spec}"] = (
                    f"{value_spec} does not exist")
            else:
                mapping[key] = value
    return mapping


def _torch_only(table: str, torch_names: list[str], reason: str) -> None:
    for name in torch_names:
        UNAVAILABLE_MAPPINGS[f"{table}: {name}"] = reason


_T_REF = "DEFAULT_REFERENCE_STATIC_QUANT_MODULE_MAPPINGS"
DEFAULT_REFERENCE_STATIC_QUANT_MODULE_MAPPINGS: dict[Callable, Any] = _build(_T_REF, [
    (_STUBS + "QuantStub", _NNQ + "Quantize"),
    (_STUBS + "DeQuantStub", _NNQ + "DeQuantize"),
    (_FLAX + "Linear", _NNQR + "Linear"),
    (_FLAX + "Conv", _ranked(_NNQR + "Conv{r}d")),
    (_FLAX + "ConvTranspose", _ranked(_NNQR + "ConvTranspose{r}d")),
    (_FLAX + "Embed", _NNQR + "Embedding"),
    (_FLAX + "GRUCell", _NNQR + "GRUCell"),
    (_FLAX + "LSTMCell", _NNQR + "LSTMCell"),
    (_FLAX + "OptimizedLSTMCell", _NNQR + "LSTMCell"),  # Flax's fused-gate cell
    (_FLAX + "SimpleCell", _NNQR + "RNNCell"),
], propagation=False)
_torch_only(_T_REF, ["torch.nn.EmbeddingBag", "torch.nn.LSTM"],
            "Flax has no EmbeddingBag / multi-layer LSTM module")

_T_STATIC = "DEFAULT_STATIC_QUANT_MODULE_MAPPINGS"
DEFAULT_STATIC_QUANT_MODULE_MAPPINGS: dict[Callable, Any] = _build(_T_STATIC, [
    (_STUBS + "QuantStub", _NNQ + "Quantize"),
    (_STUBS + "DeQuantStub", _NNQ + "DeQuantize"),
    # torch: BatchNorm2d -> BatchNorm2d, BatchNorm3d -> BatchNorm3d; Flax's is rank-free.
    (_FLAX + "BatchNorm", _NNQ + "BatchNorm2d"),
    (_FLAX + "Dropout", _NNQ + "Dropout"),
    (_FLAX + "Conv", _ranked(_NNQ + "Conv{r}d")),
    (_FLAX + "ConvTranspose", _ranked(_NNQ + "ConvTranspose{r}d")),
    (_NN + "ELU", _NNQ + "ELU"),
    (_FLAX + "Embed", _NNQ + "Embedding"),
    (_FLAX + "GroupNorm", _NNQ + "GroupNorm"),
    (_NN + "Hardswish", _NNQ + "Hardswish"),
    (_FLAX + "InstanceNorm", _NNQ + "InstanceNorm2d"),
    (_FLAX + "LayerNorm", _NNQ + "LayerNorm"),
    (_NN + "LeakyReLU", _NNQ + "LeakyReLU"),
    (_FLAX + "Linear", _NNQ + "Linear"),
    (_NN + "ReLU6", _NNQ + "ReLU6"),
    (_FLAX + "PReLU", _NNQ + "PReLU"),
    (_NNQ + "FloatFunctional", _NNQ + "QFunctional"),
    (_NNI + "BNReLU2d", _NNIQ + "BNReLU2d"),
    (_NNI + "BNReLU3d", _NNIQ + "BNReLU3d"),
    (_NNI + "ConvReLU1d", _NNIQ + "ConvReLU1d"),
    (_NNI + "ConvReLU2d", _NNIQ + "ConvReLU2d"),
    (_NNI + "ConvReLU3d", _NNIQ + "ConvReLU3d"),
    (_NNI + "ConvAdd2d", _NNIQ + "ConvAdd2d"),
    (_NNI + "ConvAddReLU2d", _NNIQ + "ConvAddReLU2d"),
    (_NNI + "LinearReLU", _NNIQ + "LinearReLU"),
    (_NNI + "LinearLeakyReLU", _NNIQ + "LinearLeakyReLU"),
    (_NNI + "LinearTanh", _NNIQ + "LinearTanh"),
    (_NNIQAT + "ConvBn1d", _NNQ + "Conv1d"),
    (_NNIQAT + "ConvBn2d", _NNQ + "Conv2d"),
    (_NNIQAT + "ConvBn3d", _NNQ + "Conv3d"),
    (_NNIQAT + "ConvBnReLU1d", _NNIQ + "ConvReLU1d"),
    (_NNIQAT + "ConvBnReLU2d", _NNIQ + "ConvReLU2d"),
    (_NNIQAT + "ConvBnReLU3d", _NNIQ + "ConvReLU3d"),
    (_NNIQAT + "ConvReLU2d", _NNIQ + "ConvReLU2d"),
    (_NNIQAT + "ConvReLU3d", _NNIQ + "ConvReLU3d"),
    (_NNIQAT + "LinearReLU", _NNIQ + "LinearReLU"),
    (_NNIQAT + "LinearBn1d", _NNQ + "Linear"),
    (_NNQAT + "Linear", _NNQ + "Linear"),
    (_NNQAT + "Conv2d", _NNQ + "Conv2d"),
    (_NNQAT + "Conv3d", _NNQ + "Conv3d"),
])
_torch_only(_T_STATIC, ["torch.nn.EmbeddingBag",
                        "torch.nn.modules.linear.NonDynamicallyQuantizableLinear"],
            "Flax has no EmbeddingBag / NonDynamicallyQuantizableLinear")

_T_QAT = "DEFAULT_QAT_MODULE_MAPPINGS"
DEFAULT_QAT_MODULE_MAPPINGS: dict[Callable, Any] = _build(_T_QAT, [
    # torch maps Conv2d and Conv3d only (qat.Conv1d exists but is not in the mapping).
    (_FLAX + "Conv", _ranked(_NNQAT + "Conv{r}d", (2, 3))),
    (_FLAX + "Linear", _NNQAT + "Linear"),
    (_NNI + "ConvBn1d", _NNIQAT + "ConvBn1d"),
    (_NNI + "ConvBn2d", _NNIQAT + "ConvBn2d"),
    (_NNI + "ConvBn3d", _NNIQAT + "ConvBn3d"),
    (_NNI + "ConvBnReLU1d", _NNIQAT + "ConvBnReLU1d"),
    (_NNI + "ConvBnReLU2d", _NNIQAT + "ConvBnReLU2d"),
    (_NNI + "ConvBnReLU3d", _NNIQAT + "ConvBnReLU3d"),
    (_NNI + "ConvReLU2d", _NNIQAT + "ConvReLU2d"),
    (_NNI + "ConvReLU3d", _NNIQAT + "ConvReLU3d"),
    (_NNI + "LinearReLU", _NNIQAT + "LinearReLU"),
    (_NNI + "LinearBn1d", _NNIQAT + "LinearBn1d"),
])
_torch_only(_T_QAT, ["torch.nn.modules.linear.NonDynamicallyQuantizableLinear"],
            "Flax has no NonDynamicallyQuantizableLinear")

_T_DYNAMIC = "DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS"
DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS: dict[Callable, Any] = _build(_T_DYNAMIC, [
    (_FLAX + "GRUCell", _NNQD + "GRUCell"),
    (_FLAX + "Linear", _NNQD + "Linear"),
    (_NNQATD + "Linear", _NNQD + "Linear"),
    (_FLAX + "LSTMCell", _NNQD + "LSTMCell"),
    # Flax's fused-gate LSTM cell: the same cell to torch (no torch counterpart).
    (_FLAX + "OptimizedLSTMCell", _NNQD + "LSTMCell"),
    (_FLAX + "SimpleCell", _NNQD + "RNNCell"),
    (_NNI + "LinearReLU", _NNIQD + "LinearReLU"),
    (_FLAX + "Embed", _NNQ + "Embedding"),
    # jaxq's float multi-layer LSTM (torch's nn.LSTM role; torch's table key is nn.LSTM).
    ("jaxq.nn.quantizable.LSTM", _NNQD + "LSTM"),
])
_torch_only(_T_DYNAMIC, ["torch.nn.LSTM", "torch.nn.GRU", "torch.nn.EmbeddingBag",
                         "torch.nn.modules.linear.NonDynamicallyQuantizableLinear"],
            "Flax has no multi-layer LSTM/GRU, EmbeddingBag or NonDynamicallyQuantizableLinear "
            "(jaxq.nn.quantizable.LSTM, jaxq's float multi-layer LSTM, is the key for "
            "nnqd.LSTM)")

_INCLUDE_QCONFIG_PROPAGATE_LIST: set[Callable] = {import_object(_FLAX + "Sequential")}

_T_OPS = "DEFAULT_FLOAT_TO_QUANTIZED_OPERATOR_MAPPINGS"
DEFAULT_FLOAT_TO_QUANTIZED_OPERATOR_MAPPINGS: dict[Callable | str, Callable] = _build(
    _T_OPS, [
        ("jax.nn.elu", _NNQ + "functional.elu"),
        ("jax.nn.hard_swish", _NNQ + "functional.hardswish"),
        ("jax.nn.leaky_relu", _NNQ + "functional.leaky_relu"),
    ], propagation=False)
_torch_only(_T_OPS, ["torch.nn.functional.instance_norm", "torch.nn.functional.layer_norm",
                     "torch.nn.functional.dropout"],
            "JAX has no functional form of these (Flax configures the module)")


def _act_post_process_entries() -> dict[Callable, Callable]:
    from jaxq.fake_quantize import (
        default_fixed_qparams_range_0to1_fake_quant,
        default_fixed_qparams_range_neg1to1_fake_quant,
    )
    from jaxq.nn import modules
    return {
        modules.Hardsigmoid: default_fixed_qparams_range_0to1_fake_quant,
        modules.Sigmoid: default_fixed_qparams_range_0to1_fake_quant,
        modules.Tanh: default_fixed_qparams_range_neg1to1_fake_quant,
    }


DEFAULT_MODULE_TO_ACT_POST_PROCESS: dict[Callable, Callable] = _act_post_process_entries()
"""Output fake-quant that QAT forces on these modules (torch's; ``torch.nn.Softmax`` has
no jaxq module form)."""
UNAVAILABLE_MAPPINGS["DEFAULT_MODULE_TO_ACT_POST_PROCESS: torch.nn.Softmax"] = (
    "jaxq.nn has no Softmax module (softmax is the function jax.nn.softmax)")


def resolve_module_class(value: Any, module: Any) -> Any:
    """A mapping value for ``module``: the value itself, or for a ByRank the class of
    ``module``'s rank (None when that rank is not mapped)."""
    if isinstance(value, ByRank):
        kernel_size = getattr(module, "kernel_size", None)
        if kernel_size is None:
            return None
        rank = len(tuple(kernel_size))
        return dict(value.by_rank).get(rank)
    return value


def mapping_classes(values: Any) -> set[Any]:
    """Every class among mapping values (ByRank values expanded)."""
    classes: set[Any] = set()
    for value in values:
        if isinstance(value, ByRank):
            classes.update(v for _, v in value.by_rank)
        else:
            classes.add(value)
    return classes


def no_observer_set() -> set[Any]:
    """Modules that cannot have observers inserted by default: the quantizable LSTM and
    MultiheadAttention (observed inside, by their ``from_float``), as torch's."""
    from jaxq.nn import quantizable
    return {quantizable.LSTM, quantizable.MultiheadAttention}


def get_default_static_quant_module_mappings() -> dict[Callable, Any]:
    """Module mapping for post-training static quantization (a copy)."""
    return dict(DEFAULT_STATIC_QUANT_MODULE_MAPPINGS)


def get_default_static_quant_reference_module_mappings() -> dict[Callable, Any]:
    """Reference module mapping for post-training static quantization (a copy)."""
    return dict(DEFAULT_REFERENCE_STATIC_QUANT_MODULE_MAPPINGS)


def get_embedding_static_quant_module_mappings() -> dict[Callable, Any]:
    """The static mapping plus ``qat.Embedding -> quantized.Embedding`` (when both exist)."""
    mapping = dict(DEFAULT_STATIC_QUANT_MODULE_MAPPINGS)
    mapping.update(_build("get_embedding_static_quant_module_mappings", [
        (_NNQAT + "Embedding", _NNQ + "Embedding")], propagation=False))
    return mapping


def _combined(default: dict, additional: dict | None) -> dict:
    combined = dict(default)
    combined.update(additional or {})
    return combined


def get_static_quant_module_class(float_module_class: Callable,
                                  additional_static_quant_mapping: dict | None = None,
                                  is_reference: bool = False) -> Any:
    """The statically quantized class of a float class (a ByRank for ``nnx.Conv``).

    Raises:
      ValueError: no quantized counterpart (torch: AssertionError).
    """
    mapping = _combined(DEFAULT_REFERENCE_STATIC_QUANT_MODULE_MAPPINGS if is_reference
                        else DEFAULT_STATIC_QUANT_MODULE_MAPPINGS,
                        additional_static_quant_mapping)
    result = mapping.get(float_module_class)
    if result is None:
        raise ValueError(f"Floating point module class {float_module_class} does not "
                         "have a corresponding quantized module class")
    return result


def get_dynamic_quant_module_class(float_module_class: Callable,
                                   additional_dynamic_quant_mapping: dict | None = None
                                   ) -> Any:
    """The dynamically quantized class of a float class.

    Raises:
      ValueError: no dynamic counterpart (torch: AssertionError).
    """
    mapping = _combined(DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS,
                        additional_dynamic_quant_mapping)
    result = mapping.get(float_module_class)
    if result is None:
        raise ValueError(f"Floating point module class {float_module_class} does not "
                         "have a corresponding quantized module class")
    return result


def get_default_qat_module_mappings() -> dict[Callable, Any]:
    """Module mapping for quantization-aware training (a copy)."""
    return dict(DEFAULT_QAT_MODULE_MAPPINGS)


def get_embedding_qat_module_mappings() -> dict[Callable, Any]:
    """The QAT mapping plus ``nnx.Embed -> qat.Embedding`` (when it exists)."""
    mapping = dict(DEFAULT_QAT_MODULE_MAPPINGS)
    mapping.update(_build("get_embedding_qat_module_mappings", [
        (_FLAX + "Embed", _NNQAT + "Embedding")], propagation=False))
    return mapping


def get_default_dynamic_quant_module_mappings() -> dict[Callable, Any]:
    """Module mapping for post-training dynamic quantization (torch returns the table
    itself, not a copy; so does jaxq)."""
    return DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS


def get_default_qconfig_propagation_list() -> set[Callable]:
    """Module types that ``prepare`` observes when they are leaves: the keys of the
    static, QAT and dynamic mappings (including keys whose jaxq counterpart is listed in
    :data:`UNAVAILABLE_MAPPINGS`, as torch's list does not depend on them) plus
    ``nnx.Sequential``."""
    return (set(DEFAULT_STATIC_QUANT_MODULE_MAPPINGS) | set(DEFAULT_QAT_MODULE_MAPPINGS)
            | set(DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS) | _PROPAGATION_KEYS
            | _INCLUDE_QCONFIG_PROPAGATE_LIST)


def get_default_compare_output_module_list() -> set[Callable]:
    """Module types whose outputs the numeric suite records."""
    return (mapping_classes(DEFAULT_STATIC_QUANT_MODULE_MAPPINGS.values())
            | mapping_classes(DEFAULT_QAT_MODULE_MAPPINGS.values())
            | mapping_classes(DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS.values())
            | get_default_qconfig_propagation_list())


def get_default_float_to_quantized_operator_mappings() -> dict[Callable | str, Callable]:
    """Float function -> quantized function (a copy)."""
    return dict(DEFAULT_FLOAT_TO_QUANTIZED_OPERATOR_MAPPINGS)


def get_quantized_operator(float_op: Callable | str) -> Callable:
    """The quantized function for a float function.

    Raises:
      ValueError: none (torch: AssertionError).
    """
    quantized_op = DEFAULT_FLOAT_TO_QUANTIZED_OPERATOR_MAPPINGS.get(float_op)
    if quantized_op is None:
        raise ValueError(f"Operator {float_op} does not have corresponding quantized op")
    return quantized_op


def _get_special_act_post_process(module: Any) -> Callable | None:
    """The forced output fake-quant constructor of ``module``'s type, if any."""
    from jaxq.eager.hooks import type_before_observation
    return DEFAULT_MODULE_TO_ACT_POST_PROCESS.get(type_before_observation(module))


def _has_special_act_post_process(module: Any, training: bool = True) -> bool:
    """torch's ``module.training and type(module) in DEFAULT_MODULE_TO_ACT_POST_PROCESS``;
    jaxq's activation modules have no training flag, so the caller passes the model's."""
    return bool(training) and type(module) in DEFAULT_MODULE_TO_ACT_POST_PROCESS
