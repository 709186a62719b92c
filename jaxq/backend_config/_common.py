"""Pattern configs shared by jaxq's default backend configs.

Mirrors ``torch.ao.quantization.backend_config._common_operator_config_utils`` entry by entry,
written with torch's *names* and translated through the one table in
:mod:`jaxq.backend_config.type_names`. Three rules follow from Flax:

* A pattern naming something jaxq has no equivalent for (``torch.nn.PixelShuffle``), or a
  jaxq module that does not exist yet, is left out of the config; a field (root, QAT,
  reference, fused module, fuser method) naming such a thing stays None.
* torch patterns that collapse onto one jaxq pattern (``Conv1d``/``Conv2d``/``Conv3d`` ->
  ``nnx.Conv``) merge into one config; fields whose values differ by rank become a
  :class:`~jaxq.backend_config.type_names.ByRank`.
* Within one rank, a later config for the same pattern overrides an earlier one, as in
  torch's BackendConfig (torch's own duplicates, e.g. the second ``ConvReLU2d`` entry, keep
  their torch effect).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxq.backend_config.backend_config import (
    BackendPatternConfig,
    DTypeConfig,
    DTypeWithConstraints,
    ObservationType,
    pattern_in_reversed_nested_tuple_format,
)
from jaxq.backend_config.type_names import ByRank, to_jaxq
from jaxq.core import dtypes

_DIFFERENT = ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT
_SHARE = ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT
_NOT_OBSERVED = ObservationType.INPUT_OUTPUT_NOT_OBSERVED
_FUSER = "torch.ao.quantization.fuser_method_mappings."


@dataclasses.dataclass(frozen=True)
class SequentialFuser:
    """torch's ``_sequential_wrapper2``: ``fuser(is_qat, m1, m2) -> fused_module(m1, m2)``.

    A frozen dataclass rather than a closure so that two fusers of the same class compare
    equal (which lets rank-collapsed configs share one).
    """

    fused_module: Any

    def __call__(self, is_qat: bool, *modules: Any) -> Any:
        del is_qat
        return self.fused_module(*modules)


@dataclasses.dataclass
class _Entry:
    """One torch config entry, in torch names, before translation."""

    pattern: str | tuple[str, ...]
    rank: int | None = None
    observation_type: ObservationType | None = None
    dtype_configs: list[DTypeConfig] = dataclasses.field(default_factory=list)
    root_module: str | None = None
    qat_module: str | None = None
    reference_quantized_module: str | None = None
    fused_module: str | None = None
    fuser_method: str | None = None          # a fuser function's torch name
    sequential_fuser: str | None = None      # torch's _sequential_wrapper2(<this module>)
    input_type_to_index: dict[str, int] | None = None
    num_tensor_args_to_observation_type: dict[int, ObservationType] | None = None


def _jaxq(name: str | None) -> Any:
    return None if name is None else to_jaxq(name, missing="none")


def _translate(entry: _Entry) -> BackendPatternConfig | None:
    names = entry.pattern if isinstance(entry.pattern, tuple) else (entry.pattern,)
    elements = [_jaxq(name) for name in names]
    if any(element is None for element in elements):
        return None
    pattern = tuple(elements) if isinstance(entry.pattern, tuple) else elements[0]
    config = BackendPatternConfig(pattern).set_dtype_configs(entry.dtype_configs)
    if entry.observation_type is not None:
        config.set_observation_type(entry.observation_type)
    config.set_root_module(_jaxq(entry.root_module))
    config.set_qat_module(_jaxq(entry.qat_module))
    config.set_reference_quantized_module(_jaxq(entry.reference_quantized_module))
    config.set_fused_module(_jaxq(entry.fused_module))
    if entry.fuser_method is not None:
        config.set_fuser_method(_jaxq(entry.fuser_method))
    elif entry.sequential_fuser is not None:
        fused = _jaxq(entry.sequential_fuser)
        config.set_fuser_method(None if fused is None else SequentialFuser(fused))
    if entry.input_type_to_index:
        config._set_input_type_to_index(entry.input_type_to_index)
    if entry.num_tensor_args_to_observation_type:
        config._set_num_tensor_args_to_observation_type(
            entry.num_tensor_args_to_observation_type)
    return config


_RANKED_FIELDS = ("root_module", "qat_module", "reference_quantized_module", "fused_module",
                  "fuser_method")


def _merge(configs: list[tuple[int | None, BackendPatternConfig]]) -> BackendPatternConfig:
    if len(configs) == 1:
        return configs[0][1]
    first = configs[0][1]
    for _, other in configs[1:]:
        # Collapsed ranks must agree on everything except the rank-specific modules.
        if (other.observation_type != first.observation_type
                or other.dtype_configs != first.dtype_configs
                or other._input_type_to_index != first._input_type_to_index
                or other._num_tensor_args_to_observation_type
                != first._num_tensor_args_to_observation_type):
            raise AssertionError(f"rank-collapsed configs for {first.pattern!r} disagree")
    merged = BackendPatternConfig.from_dict(first.to_dict())
    for field in _RANKED_FIELDS:
        values = {rank: getattr(config, field) for rank, config in configs
                  if getattr(config, field) is not None}
        distinct = []
        for value in values.values():
            if value not in distinct:
                distinct.append(value)
        if not distinct:
            value = None
        elif len(distinct) == 1 and len(values) == len(configs):
            value = distinct[0]
        else:
            value = ByRank.from_dict(values)
        setattr(merged, field, value)
    return merged


def build_pattern_configs(entries: list[_Entry]) -> list[BackendPatternConfig]:
    """Translates torch-named entries into jaxq configs (see the module docstring)."""
    by_key_and_rank: dict[tuple[Any, int | None], BackendPatternConfig] = {}
    for entry in entries:
        config = _translate(entry)
        if config is None:
            continue
        key = pattern_in_reversed_nested_tuple_format(config)
        by_key_and_rank[(key, entry.rank)] = config
    groups: dict[Any, list[tuple[int | None, BackendPatternConfig]]] = {}
    for (key, rank), config in by_key_and_rank.items():
        groups.setdefault(key, []).append((rank, config))
    return [_merge(group) for group in groups.values()]


# --- torch's entries, in torch's order ------------------------------------------------------

_FIXED_QPARAM_OP_0TO1_CONSTRAINTS = DTypeWithConstraints(
    dtype=dtypes.quint8, quant_min_lower_bound=0, quant_max_upper_bound=255,
    scale_exact_match=1.0 / 256.0, zero_point_exact_match=0)
_FIXED_QPARAM_OP_NEG1TO1_CONSTRAINTS = DTypeWithConstraints(
    dtype=dtypes.quint8, quant_min_lower_bound=0, quant_max_upper_bound=255,
    scale_exact_match=2.0 / 256.0, zero_point_exact_match=128)

#: torch's fixed-qparams ops (by torch name) and their output constraints.
FIXED_QPARAMS_OP_TO_CONSTRAINTS_TORCH_NAMES: dict[str, DTypeWithConstraints] = {
    "torch.nn.Hardsigmoid": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "torch.nn.functional.hardsigmoid": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "hardsigmoid": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "hardsigmoid_": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "torch.nn.Sigmoid": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "torch.sigmoid": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "sigmoid": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "sigmoid_": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "torch.nn.Softmax": _FIXED_QPARAM_OP_0TO1_CONSTRAINTS,
    "torch.nn.Tanh": _FIXED_QPARAM_OP_NEG1TO1_CONSTRAINTS,
    "torch.tanh": _FIXED_QPARAM_OP_NEG1TO1_CONSTRAINTS,
    "tanh": _FIXED_QPARAM_OP_NEG1TO1_CONSTRAINTS,
    "tanh_": _FIXED_QPARAM_OP_NEG1TO1_CONSTRAINTS,
}


def binary_op_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    num_tensor_args = {0: _DIFFERENT, 1: _SHARE, 2: _DIFFERENT}
    entries = []
    for op in ("operator.add", "torch.add", "operator.mul", "torch.mul"):
        for pattern in ((op, "torch.nn.ReLU"), (op, "torch.nn.functional.relu"),
                        (op, "torch.relu"), op):
            entries.append(_Entry(pattern, dtype_configs=dtype_configs,
                                  num_tensor_args_to_observation_type=num_tensor_args))
    entries.append(_Entry("torch.matmul", dtype_configs=dtype_configs))
    return entries


def linear_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    d = dict(dtype_configs=dtype_configs)
    lin, relu, frelu = "torch.nn.Linear", "torch.nn.ReLU", "torch.nn.functional.relu"
    flin = "torch.nn.functional.linear"
    ref, qat = "torch.ao.nn.quantized.reference.Linear", "torch.ao.nn.qat.Linear"
    lr, lr_qat = "torch.ao.nn.intrinsic.LinearReLU", "torch.ao.nn.intrinsic.qat.LinearReLU"
    lbn = "torch.ao.nn.intrinsic.LinearBn1d"
    lbn_qat = "torch.ao.nn.intrinsic.qat.LinearBn1d"
    return [
        _Entry(lin, observation_type=_DIFFERENT, root_module=lin,
               reference_quantized_module=ref, qat_module=qat, **d),
        _Entry(qat, observation_type=_DIFFERENT, root_module=lin,
               reference_quantized_module=ref, **d),
        _Entry(flin, observation_type=_DIFFERENT, input_type_to_index={"weight": 1, "bias": 2},
               **d),
        _Entry((lin, relu), sequential_fuser=lr, fused_module=lr, **d),
        _Entry((lin, frelu), sequential_fuser=lr, fused_module=lr, **d),
        _Entry(lr, observation_type=_DIFFERENT, root_module=lin, reference_quantized_module=ref,
               qat_module=lr_qat, **d),
        _Entry(lr_qat, observation_type=_DIFFERENT, root_module=lin,
               reference_quantized_module=ref, **d),
        _Entry((flin, relu), observation_type=_DIFFERENT, **d),
        _Entry((flin, frelu), observation_type=_DIFFERENT, **d),
        _Entry((lin, "torch.nn.BatchNorm1d"), fuser_method=_FUSER + "fuse_linear_bn",
               fused_module=lbn, **d),
        _Entry(lbn, observation_type=_DIFFERENT, root_module=lin, reference_quantized_module=ref,
               qat_module=lbn_qat, **d),
        _Entry(lbn_qat, observation_type=_DIFFERENT, root_module=lin,
               reference_quantized_module=ref, **d),
    ]


def conv_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    entries = []
    relu, frelu = "torch.nn.ReLU", "torch.nn.functional.relu"
    for r in (1, 2, 3):
        d = dict(dtype_configs=dtype_configs, rank=r)
        root, transpose = f"torch.nn.Conv{r}d", f"torch.nn.ConvTranspose{r}d"
        bn = f"torch.nn.BatchNorm{r}d"
        ref = f"torch.ao.nn.quantized.reference.Conv{r}d"
        transpose_ref = f"torch.ao.nn.quantized.reference.ConvTranspose{r}d"
        conv_relu = f"torch.ao.nn.intrinsic.ConvReLU{r}d"
        conv_bn = f"torch.ao.nn.intrinsic.ConvBn{r}d"
        conv_bn_relu = f"torch.ao.nn.intrinsic.ConvBnReLU{r}d"
        qat = f"torch.ao.nn.qat.Conv{r}d"
        relu_qat = f"torch.ao.nn.intrinsic.qat.ConvReLU{r}d"
        bn_qat = f"torch.ao.nn.intrinsic.qat.ConvBn{r}d"
        bn_relu_qat = f"torch.ao.nn.intrinsic.qat.ConvBnReLU{r}d"
        func = f"torch.nn.functional.conv{r}d"
        func_transpose = f"torch.nn.functional.conv_transpose{r}d"
        weight_bias = {"weight": 1, "bias": 2}
        entries += [
            _Entry(root, observation_type=_DIFFERENT, root_module=root,
                   reference_quantized_module=ref, qat_module=qat, **d),
            _Entry(qat, observation_type=_DIFFERENT, root_module=root,
                   reference_quantized_module=ref, **d),
            _Entry(func, observation_type=_DIFFERENT, input_type_to_index=weight_bias, **d),
            _Entry((root, relu), sequential_fuser=conv_relu, fused_module=conv_relu, **d),
            _Entry((root, frelu), sequential_fuser=conv_relu, fused_module=conv_relu, **d),
            _Entry(conv_relu, observation_type=_DIFFERENT, root_module=root,
                   reference_quantized_module=ref, qat_module=relu_qat, **d),
            _Entry(relu_qat, observation_type=_DIFFERENT, root_module=root,
                   reference_quantized_module=ref, **d),
            _Entry((func, relu), observation_type=_DIFFERENT, **d),
            _Entry((func, frelu), observation_type=_DIFFERENT, **d),
            # torch repeats these two; the repeats override the entries above.
            _Entry(conv_relu, qat_module=relu_qat, **d),
            _Entry(relu_qat, root_module=root, reference_quantized_module=ref, **d),
            _Entry((root, bn), fuser_method=_FUSER + "fuse_conv_bn", fused_module=conv_bn, **d),
            _Entry((root, bn, relu), fuser_method=_FUSER + "fuse_conv_bn_relu",
                   fused_module=conv_bn_relu, **d),
            _Entry((root, bn, frelu), root_module=root, fuser_method=_FUSER + "fuse_conv_bn_relu",
                   fused_module=conv_bn_relu, **d),
            _Entry(conv_bn, qat_module=bn_qat, **d),
            _Entry(conv_bn_relu, qat_module=bn_relu_qat, **d),
            _Entry(bn_qat, observation_type=_DIFFERENT, root_module=root,
                   reference_quantized_module=ref, **d),
            _Entry(bn_relu_qat, observation_type=_DIFFERENT, root_module=root,
                   reference_quantized_module=ref, **d),
            _Entry(transpose, root_module=transpose, reference_quantized_module=transpose_ref,
                   **d),
            _Entry((transpose, bn), fuser_method=_FUSER + "fuse_convtranspose_bn",
                   root_module=transpose, reference_quantized_module=transpose_ref, **d),
            _Entry(func_transpose, input_type_to_index=weight_bias, **d),
        ]
    return entries


def cat_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    return [_Entry("torch.cat", observation_type=_SHARE, dtype_configs=dtype_configs)]


def ln_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    return [
        _Entry("torch.nn.LayerNorm", observation_type=_DIFFERENT, dtype_configs=dtype_configs),
        _Entry("torch.nn.functional.layer_norm", observation_type=_DIFFERENT,
               dtype_configs=dtype_configs, input_type_to_index={"weight": 2, "bias": 3}),
    ]


def default_op_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    ops = [
        "torch.nn.ELU", "torch.nn.LeakyReLU", "torch.nn.Hardswish", "torch.nn.InstanceNorm1d",
        "torch.nn.InstanceNorm2d", "torch.nn.InstanceNorm3d", "torch.nn.Dropout",
        "torch.nn.PReLU", "torch.nn.functional.elu", "torch.nn.functional.hardswish",
        "torch.nn.functional.leaky_relu", "torch.nn.functional.dropout",
    ]
    entries = [_Entry(op, observation_type=_DIFFERENT, dtype_configs=dtype_configs,
                      rank=_instance_norm_rank(op)) for op in ops]
    entries.append(_Entry("torch.nn.functional.group_norm", observation_type=_DIFFERENT,
                          dtype_configs=dtype_configs, input_type_to_index={"weight": 2, "bias": 3}))
    entries.append(_Entry("torch.nn.functional.instance_norm", observation_type=_DIFFERENT,
                          dtype_configs=dtype_configs, input_type_to_index={"weight": 3, "bias": 4}))
    return entries


def _instance_norm_rank(op: str) -> int | None:
    return int(op[-2]) if op.startswith("torch.nn.InstanceNorm") else None


def _add_fixed_qparams_to_dtype_configs(dtype_configs: list[DTypeConfig],
                                        constraints: DTypeWithConstraints) -> list[DTypeConfig]:
    """torch's helper: put the fixed-qparams constraints on matching activation dtypes."""
    new_dtype_configs = []
    for dtype_config in dtype_configs:
        replaced = {}
        for field in ("input_dtype_with_constraints", "output_dtype_with_constraints"):
            original = getattr(dtype_config, field)
            if original.dtype != constraints.dtype:
                replaced[field] = original
                continue
            if original.scale_min_lower_bound is not None:
                raise ValueError(
                    f"scale_min_lower_bound is invalid for fixed qparams ops: {dtype_config}")
            if original.scale_max_upper_bound is not None:
                raise ValueError(
                    f"scale_max_upper_bound is invalid for fixed qparams ops: {dtype_config}")
            replaced[field] = dataclasses.replace(
                original, quant_min_lower_bound=constraints.quant_min_lower_bound,
                quant_max_upper_bound=constraints.quant_max_upper_bound,
                scale_exact_match=constraints.scale_exact_match,
                zero_point_exact_match=constraints.zero_point_exact_match)
        new_dtype_configs.append(DTypeConfig(
            replaced["input_dtype_with_constraints"], replaced["output_dtype_with_constraints"],
            dtype_config.weight_dtype_with_constraints, dtype_config.bias_dtype,
            dtype_config.is_dynamic))
    return new_dtype_configs


def fixed_qparams_op_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    return [_Entry(op, observation_type=_DIFFERENT,
                   dtype_configs=_add_fixed_qparams_to_dtype_configs(dtype_configs, constraints))
            for op, constraints in FIXED_QPARAMS_OP_TO_CONSTRAINTS_TORCH_NAMES.items()]


SHARE_QPARAMS_OPS_TORCH_NAMES = [
    "torch.nn.AdaptiveAvgPool1d", "torch.nn.AdaptiveAvgPool2d", "torch.nn.AdaptiveAvgPool3d",
    "torch.nn.AvgPool1d", "torch.nn.AvgPool2d", "torch.nn.AvgPool3d", "torch.nn.Hardtanh",
    "torch.nn.Identity", "torch.nn.MaxPool1d", "torch.nn.MaxPool2d", "torch.nn.MaxPool3d",
    "torch.nn.PixelShuffle", "torch.nn.PixelUnshuffle", "torch.nn.ReLU", "torch.nn.ReLU6",
    "torch.adaptive_avg_pool1d", "torch.nn.functional.adaptive_avg_pool2d",
    "torch.nn.functional.adaptive_avg_pool3d", "torch.nn.functional.hardtanh",
    "torch.nn.functional.hardtanh_", "torch.nn.functional.interpolate",
    "torch.nn.functional.max_pool1d", "torch.nn.functional.max_pool2d",
    "torch.nn.functional.max_pool3d", "torch.nn.functional.pixel_shuffle",
    "torch.nn.functional.pixel_unshuffle", "torch.nn.functional.relu",
    "torch.nn.functional.relu6", "torch.avg_pool1d", "torch._C._nn.avg_pool2d",
    "torch._C._nn.avg_pool3d", "torch.clamp", "torch.flatten", "torch.mean", "torch.narrow",
    "torch.repeat_interleave", "torch.transpose", "torch.squeeze", "torch.stack",
    "torch.unsqueeze", "operator.floordiv", "contiguous", "clamp", "detach", "detach_", "mean",
    "permute", "repeat", "repeat_interleave", "reshape", "resize_", "relu", "relu_", "squeeze",
    "squeeze_", "transpose", "unsqueeze", "unsqueeze_", "view",
]


def share_qparams_op_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    return [_Entry(op, observation_type=_SHARE, dtype_configs=dtype_configs)
            for op in SHARE_QPARAMS_OPS_TORCH_NAMES]


def bn_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    d = dict(dtype_configs=dtype_configs)
    entries = []
    bn_to_fused = {2: "torch.ao.nn.intrinsic.BNReLU2d", 3: "torch.ao.nn.intrinsic.BNReLU3d"}
    for r, fused in bn_to_fused.items():
        bn = f"torch.nn.BatchNorm{r}d"
        entries += [
            _Entry((bn, "torch.nn.ReLU"), sequential_fuser=fused, fused_module=fused, rank=r, **d),
            _Entry((bn, "torch.nn.functional.relu"), sequential_fuser=fused, fused_module=fused,
                   rank=r, **d),
            _Entry(bn, observation_type=_DIFFERENT, rank=r, **d),
        ]
    for r, fused in bn_to_fused.items():
        entries.append(_Entry(fused, observation_type=_DIFFERENT, rank=r, **d))
    return entries


def rnn_op_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    return [_Entry(f"torch.nn.{op}", observation_type=_DIFFERENT, dtype_configs=dtype_configs,
                   root_module=f"torch.nn.{op}",
                   reference_quantized_module=f"torch.ao.nn.quantized.reference.{op}")
            for op in ("GRUCell", "LSTMCell", "RNNCell", "LSTM", "GRU")]


def embedding_op_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    entries = []
    for op in ("Embedding", "EmbeddingBag"):
        float_op, qat_op = f"torch.nn.{op}", f"torch.ao.nn.qat.{op}"
        ref_op = f"torch.ao.nn.quantized.reference.{op}"
        entries += [
            _Entry(float_op, observation_type=_DIFFERENT, dtype_configs=dtype_configs,
                   qat_module=qat_op, root_module=float_op, reference_quantized_module=ref_op),
            _Entry(qat_op, observation_type=_DIFFERENT, dtype_configs=dtype_configs,
                   root_module=float_op, reference_quantized_module=ref_op),
        ]
    return entries


def tensor_info_op_entries(dtype_configs: list[DTypeConfig]) -> list[_Entry]:
    return [_Entry(op, observation_type=_NOT_OBSERVED, dtype_configs=dtype_configs)
            for op in ("shape", "size")]


Builder = Callable[[list[DTypeConfig]], list[_Entry]]
