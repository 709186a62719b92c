"""jaxq's x86 backend config: torch's ``get_x86_backend_config`` in Flax/JAX terms.

Same patterns as the native config without layer norm; binary and fixed-qparams ops use the
weighted int8 dtype config, as torch's x86 config does.

Example:
  >>> from jaxq.backend_config import get_x86_backend_config
  >>> get_x86_backend_config().name
  'x86'
"""

from __future__ import annotations

from jaxq.backend_config import _common, native
from jaxq.backend_config.backend_config import BackendConfig

__all__ = ["get_x86_backend_config"]

# torch defines these again for x86 with the same values; frozen DTypeConfigs can be shared.
x86_weighted_op_int8_dtype_config = native.weighted_op_quint8_dtype_config
x86_default_op_quint8_dtype_config = native.default_op_quint8_dtype_config
x86_default_op_fp16_dtype_config = native.default_op_fp16_dtype_config
x86_default_dynamic_int8_dtype_config = native.default_dynamic_int8_dtype_config
x86_default_dynamic_float16_dtype_config = native.default_dynamic_float16_dtype_config
x86_weight_only_quint8_dtype_config = native.weight_only_quint8_dtype_config
x86_weight_only_quint4x2_dtype_config = native.weight_only_quint4x2_dtype_config


def get_x86_backend_config() -> BackendConfig:
    """The BackendConfig for jaxq's x86 backend (jaxq's default).

    Returns a fresh BackendConfig each call; patterns naming jaxq modules that do not exist
    yet are left out until they do.
    """
    weighted = [x86_weighted_op_int8_dtype_config]
    linear = [x86_weighted_op_int8_dtype_config, x86_default_dynamic_int8_dtype_config,
              x86_default_dynamic_float16_dtype_config]
    default = [x86_default_op_quint8_dtype_config]
    dynamic = [x86_default_dynamic_int8_dtype_config, x86_default_dynamic_float16_dtype_config]
    embedding = [x86_weight_only_quint8_dtype_config, x86_weight_only_quint4x2_dtype_config]
    entries = (
        _common.conv_entries(weighted)
        + _common.linear_entries(linear)
        + _common.binary_op_entries(weighted)
        + _common.cat_entries(default)
        + _common.default_op_entries(default)
        + _common.fixed_qparams_op_entries(weighted)
        + _common.share_qparams_op_entries(default)
        + _common.tensor_info_op_entries(default)
        + _common.bn_entries(default)
        + _common.rnn_op_entries(dynamic)
        + _common.embedding_op_entries(embedding)
    )
    return BackendConfig("x86").set_backend_pattern_configs(
        _common.build_pattern_configs(entries))
