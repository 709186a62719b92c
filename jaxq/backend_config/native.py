"""jaxq's native backend config: torch's ``get_native_backend_config`` in Flax/JAX terms.

The dtype configs are torch's (quint8 activations x qint8 weights for weighted ops, quint8
for other ops, dynamic int8 and float16 for linear and RNN cells, weight-only quint8 and
quint4x2 for embeddings, quint8 input/output with float weights for layer norm). Patterns
are translated through :mod:`jaxq.backend_config.type_names`; see
:mod:`jaxq.backend_config._common` for how rank-specific torch entries collapse.

Example:
  >>> from flax import nnx
  >>> from jaxq.backend_config import get_native_backend_config
  >>> config = get_native_backend_config()
  >>> [c for c in config.configs if c.pattern is nnx.Linear][0].dtype_configs[0].weight_dtype
  jaxq.qint8
"""

from __future__ import annotations

from jaxq.backend_config import _common
from jaxq.backend_config.backend_config import BackendConfig, DTypeConfig
from jaxq.core import dtypes

__all__ = [
    "default_op_quint8_dtype_config",
    "default_op_fp16_dtype_config",
    "default_dynamic_int8_dtype_config",
    "default_dynamic_float16_dtype_config",
    "input_output_only_quint8_dtype_config",
    "weight_only_quint8_dtype_config",
    "weight_only_quint4x2_dtype_config",
    "weighted_op_quint8_dtype_config",
    "get_native_backend_config",
    "get_native_backend_config_dict",
]

weighted_op_quint8_dtype_config = DTypeConfig(
    input_dtype=dtypes.quint8, output_dtype=dtypes.quint8, weight_dtype=dtypes.qint8,
    bias_dtype=dtypes.float32)

default_op_quint8_dtype_config = DTypeConfig(
    input_dtype=dtypes.quint8, output_dtype=dtypes.quint8)

default_op_fp16_dtype_config = DTypeConfig(
    input_dtype=dtypes.float16, output_dtype=dtypes.float16, weight_dtype=dtypes.float16,
    bias_dtype=dtypes.float16)

default_dynamic_int8_dtype_config = DTypeConfig(
    input_dtype=dtypes.quint8, output_dtype=dtypes.float32, weight_dtype=dtypes.qint8,
    bias_dtype=dtypes.float32, is_dynamic=True)

default_dynamic_float16_dtype_config = DTypeConfig(
    input_dtype=dtypes.float16, output_dtype=dtypes.float32, weight_dtype=dtypes.float16,
    bias_dtype=dtypes.float32, is_dynamic=True)

# LayerNorm: the kernel supports float weights only.
input_output_only_quint8_dtype_config = DTypeConfig(
    input_dtype=dtypes.quint8, output_dtype=dtypes.quint8, weight_dtype=dtypes.float32,
    bias_dtype=dtypes.float32)

weight_only_quint8_dtype_config = DTypeConfig(
    input_dtype=dtypes.float32, output_dtype=dtypes.float32, weight_dtype=dtypes.quint8)

weight_only_quint4x2_dtype_config = DTypeConfig(
    input_dtype=dtypes.float32, output_dtype=dtypes.float32, weight_dtype=dtypes.quint4x2)


def get_native_backend_config() -> BackendConfig:
    """The BackendConfig for jaxq's native (fbgemm/qnnpack-like) backend.

    Returns a fresh BackendConfig each call; patterns naming jaxq modules that do not exist
    yet (``jaxq.nn.intrinsic.*`` ...) are left out until they do.
    """
    weighted = [weighted_op_quint8_dtype_config]
    linear = [weighted_op_quint8_dtype_config, default_dynamic_int8_dtype_config,
              default_dynamic_float16_dtype_config]
    default = [default_op_quint8_dtype_config]
    dynamic = [default_dynamic_int8_dtype_config, default_dynamic_float16_dtype_config]
    embedding = [weight_only_quint8_dtype_config, weight_only_quint4x2_dtype_config]
    entries = (
        _common.conv_entries(weighted)
        + _common.linear_entries(linear)
        + _common.binary_op_entries(default)
        + _common.cat_entries(default)
        + _common.default_op_entries(default)
        + _common.fixed_qparams_op_entries(default)
        + _common.share_qparams_op_entries(default)
        + _common.tensor_info_op_entries(default)
        + _common.bn_entries(default)
        + _common.ln_entries([input_output_only_quint8_dtype_config])
        + _common.rnn_op_entries(dynamic)
        + _common.embedding_op_entries(embedding)
    )
    return BackendConfig("native").set_backend_pattern_configs(
        _common.build_pattern_configs(entries))


def get_native_backend_config_dict() -> dict:
    """:func:`get_native_backend_config` in dict form."""
    return get_native_backend_config().to_dict()
