"""Backend configs: ``torch.ao.quantization.backend_config`` for Flax/JAX patterns.

``jaxq.backend_config.X`` is ``torch.ao.quantization.backend_config.X``. The torch -> jaxq
name table lives in :mod:`jaxq.backend_config.type_names`.
"""

from jaxq.backend_config.backend_config import (
    BackendConfig,
    BackendPatternConfig,
    DTypeConfig,
    DTypeWithConstraints,
    ObservationType,
)
from jaxq.backend_config.native import get_native_backend_config, get_native_backend_config_dict
from jaxq.backend_config.type_names import ByRank
from jaxq.backend_config.x86 import get_x86_backend_config

__all__ = [
    "BackendConfig",
    "BackendPatternConfig",
    "ByRank",
    "DTypeConfig",
    "DTypeWithConstraints",
    "ObservationType",
    "get_native_backend_config",
    "get_native_backend_config_dict",
    "get_x86_backend_config",
]
