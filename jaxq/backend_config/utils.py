"""Lookups over a BackendConfig that the workflows use (torch's backend_config.utils)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxq.backend_config.backend_config import BackendConfig, DTypeConfig

__all__ = [
    "get_pattern_to_dtype_configs",
    "get_qat_module_classes",
    "get_fused_module_classes",
    "get_pattern_to_input_type_to_index",
    "get_root_module_to_quantized_reference_module",
    "get_fuser_method_mapping",
    "get_module_to_qat_module",
    "get_fusion_pattern_to_root_node_getter",
    "get_fusion_pattern_to_extra_inputs_getter",
]


def get_pattern_to_dtype_configs(backend_config: BackendConfig) -> dict[Any, list[DTypeConfig]]:
    """Pattern (reversed nested tuple format) -> its dtype configs."""
    return {pattern: config.dtype_configs
            for pattern, config in backend_config._pattern_complex_format_to_config.items()}


def _distinct(values) -> tuple:
    result = []
    for value in values:
        if value is not None and value not in result:
            result.append(value)
    return tuple(result)


def get_qat_module_classes(backend_config: BackendConfig) -> tuple[Any, ...]:
    """Every QAT module named by the config (ByRank values included as they are)."""
    return _distinct(config.qat_module for config in backend_config.configs)


def get_fused_module_classes(backend_config: BackendConfig) -> tuple[Any, ...]:
    """Every fused module named by the config (ByRank values included as they are)."""
    return _distinct(config.fused_module for config in backend_config.configs)


def get_pattern_to_input_type_to_index(backend_config: BackendConfig
                                       ) -> dict[Any, dict[str, int]]:
    """Pattern -> ``{"weight": i, "bias": j}`` for functional patterns."""
    return {pattern: config._input_type_to_index
            for pattern, config in backend_config._pattern_complex_format_to_config.items()}


def get_root_module_to_quantized_reference_module(backend_config: BackendConfig
                                                  ) -> dict[Any, Any]:
    """Float root module -> reference quantized module (possibly a ByRank)."""
    mapping = {}
    for config in backend_config.configs:
        if config.root_module is not None and config.reference_quantized_module is not None:
            mapping[config.root_module] = config.reference_quantized_module
    return mapping


def _reverse2(f: Callable) -> Callable:
    def reversed_(is_qat, x, y):
        return f(is_qat, y, x)
    return reversed_


def _reverse3(f: Callable) -> Callable:
    def reversed_(is_qat, x, w):
        y, z = w
        return f(is_qat, z, y, x)
    return reversed_


def get_fuser_method_mapping(backend_config: BackendConfig) -> dict[Any, Callable]:
    """Pattern (reversed nested tuple format) -> fuser method taking arguments in that order."""
    mapping = {}
    for pattern, config in backend_config._pattern_complex_format_to_config.items():
        if config.fuser_method is None:
            continue
        fuser = config.fuser_method
        if config._pattern_complex_format is None:
            if not isinstance(config.pattern, tuple):
                raise ValueError(f"Expected pattern to be a tuple, got: {config.pattern}")
            fuser = _reverse2(fuser) if len(config.pattern) == 2 else _reverse3(fuser)
        mapping[pattern] = fuser
    return mapping


def get_module_to_qat_module(backend_config: BackendConfig) -> dict[Any, Any]:
    """Pattern -> QAT module (possibly a ByRank)."""
    return {pattern: config.qat_module
            for pattern, config in backend_config._pattern_complex_format_to_config.items()
            if config.qat_module is not None}


def get_fusion_pattern_to_root_node_getter(backend_config: BackendConfig
                                           ) -> dict[Any, Callable]:
    return {pattern: config._root_node_getter
            for pattern, config in backend_config._pattern_complex_format_to_config.items()
            if config._root_node_getter is not None}


def get_fusion_pattern_to_extra_inputs_getter(backend_config: BackendConfig
                                              ) -> dict[Any, Callable]:
    return {pattern: config._extra_inputs_getter
            for pattern, config in backend_config._pattern_complex_format_to_config.items()
            if config._extra_inputs_getter is not None}
