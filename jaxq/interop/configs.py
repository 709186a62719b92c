"""BackendConfig and the custom configs: live torch objects -> jaxq (and custom configs back).

BackendConfig: each torch pattern config is written down with torch's names and handed to
the same builder jaxq's own native / x86 configs use
(:func:`jaxq.backend_config._common.build_pattern_configs`), so rank-specific torch entries
collapse onto Flax's rank-agnostic modules exactly as there (fields that differ by rank become
a :class:`~jaxq.backend_config.type_names.ByRank`). Patterns naming torch ops that JAX lacks,
and FX-only pattern formats (``_pattern_complex_format`` with node getters, used by onednn's
conv-add fusions), are left out with a :class:`TranslationWarning` (``strict=True`` raises);
classes or functions outside jaxq's table raise, naming them.

Custom configs: module classes translate through the table or the caller's ``type_map``;
standalone entries convert recursively; ``example_inputs`` tensors become arrays of the same
shape (jaxq does not reorder them: torch's channels-first examples stay channels-first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxq.backend_config import type_names
from jaxq.interop._common import report_dropped, require_torch, torch_type_name_of

__all__ = ["backend_config_from_torch", "custom_config_from_torch", "custom_config_to_torch",
           "class_from_torch", "class_to_torch"]


def class_from_torch(obj: Any, type_map: dict | None, where: str) -> Any:
    """A torch class or function -> its jaxq counterpart (``type_map`` first, then the table).

    Raises:
      ValueError: naming ``where`` and the object when neither knows it.
    """
    for torch_obj, jaxq_obj in (type_map or {}).items():
        if torch_obj is obj:
            return jaxq_obj
    name = torch_type_name_of(obj, where)
    try:
        return type_names.to_jaxq(name)
    except LookupError as error:
        raise ValueError(f"{where}: {error}") from None


def class_to_torch(obj: Any, type_map: dict | None, where: str) -> Any:
    """A jaxq class -> its torch counterpart (reverse ``type_map``, then the table)."""
    for torch_obj, jaxq_obj in (type_map or {}).items():
        if jaxq_obj is obj:
            return torch_obj
    names = type_names.torch_names_for(obj)
    if not names:
        raise ValueError(f"{where}: {obj!r} has no torch equivalent in jaxq's translation "
                         "table; pass type_map={torch_object: jaxq_object}")
    return type_names.import_object(names[0])


# --- BackendConfig ---------------------------------------------------------------------

def _translatable(name: str) -> bool:
    return type_names.to_jaxq(name, missing="none") is not None


def _fuser_names(fuser: Any, where: str) -> tuple[str | None, str | None]:
    """``(fuser_method name, sequential_fuser name)`` of a torch fuser method."""
    qualname = getattr(fuser, "__qualname__", "")
    if qualname.startswith("_sequential_wrapper2"):
        for cell in fuser.__closure__ or ():
            if isinstance(cell.cell_contents, type):
                return None, torch_type_name_of(cell.cell_contents, where)
    return torch_type_name_of(fuser, where), None


def backend_config_from_torch(config: Any, strict: bool = False) -> Any:
    """A live torch ``BackendConfig`` -> jaxq ``BackendConfig`` (see the module docstring).

    Raises:
      ValueError: naming the pattern for unknown objects, rank-collapsed patterns that
        disagree on dtypes or observation, and (``strict=True``) left-out entries.
    """
    from jaxq.backend_config import BackendConfig, DTypeConfig, ObservationType
    from jaxq.backend_config._common import _Entry, build_pattern_configs

    entries: list[_Entry] = []
    dropped: list[str] = []
    for torch_config in config.configs:
        pattern = torch_config.pattern
        where = f"BackendConfig {config.name!r} pattern {pattern!r}"
        if torch_config._pattern_complex_format is not None or pattern is None:
            dropped.append(f"{torch_config._pattern_complex_format!r} (an FX-only complex "
                           "pattern format with node getters)")
            continue
        elements = pattern if isinstance(pattern, tuple) else (pattern,)
        names = tuple(torch_type_name_of(e, where) for e in elements)
        missing = [n for n in names if not _translatable(n)]
        if missing:
            dropped.append(f"pattern {names if len(names) > 1 else names[0]!r} "
                           f"(no jaxq {', '.join(missing)})")
            continue
        ranks = {type_names.rank_of(n) for n in names} - {None}
        if len(ranks) > 1:
            raise ValueError(f"{where}: elements of different spatial ranks {sorted(ranks)}")
        fields: dict[str, Any] = {}
        for field in ("root_module", "qat_module", "reference_quantized_module",
                      "fused_module"):
            value = getattr(torch_config, field)
            if value is not None:
                name = torch_type_name_of(value, f"{where}.{field}")
                if not _translatable(name):
                    dropped.append(f"{field} {name!r} of pattern {names!r}")
                fields[field] = name
        if torch_config.fuser_method is not None:
            fuser, sequential = _fuser_names(torch_config.fuser_method, f"{where}.fuser_method")
            name = fuser or sequential
            if not _translatable(name):
                dropped.append(f"fuser_method {name!r} of pattern {names!r}")
            fields["fuser_method"], fields["sequential_fuser"] = fuser, sequential
        dtype_configs = [DTypeConfig.from_dict(dc.to_dict())
                         for dc in torch_config.dtype_configs]
        entries.append(_Entry(
            names if isinstance(pattern, tuple) else names[0],
            rank=next(iter(ranks), None),
            observation_type=ObservationType[torch_config.observation_type.name],
            dtype_configs=dtype_configs,
            input_type_to_index=dict(torch_config._input_type_to_index) or None,
            num_tensor_args_to_observation_type={
                k: ObservationType[v.name]
                for k, v in torch_config._num_tensor_args_to_observation_type.items()} or None,
            **fields))
    report_dropped(dropped, f"BackendConfig {config.name!r}", strict)
    try:
        configs = build_pattern_configs(entries)
    except AssertionError as error:
        raise ValueError(f"BackendConfig {config.name!r}: {error}") from None
    return BackendConfig(config.name).set_backend_pattern_configs(configs)


# --- custom configs --------------------------------------------------------------------

def _array_from_torch(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        import jax.numpy as jnp
        return jnp.asarray(value.detach().cpu().numpy())
    if isinstance(value, (list, tuple)):
        return type(value)(_array_from_torch(v) for v in value)
    return value


def _array_to_torch(value: Any) -> Any:
    torch = require_torch()
    if hasattr(value, "shape") and hasattr(value, "dtype") and not hasattr(value, "detach"):
        return torch.from_numpy(np.array(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_array_to_torch(v) for v in value)
    return value


def _convert_custom(config: Any, target: Any, classes, mapping_fn, backend_fn, recurse,
                    examples_fn, quant_type_fn) -> Any:
    """Copies a Prepare/Convert/Fuse custom config onto ``target`` with converters."""
    kind = type(config).__name__
    if kind == "FuseCustomConfig":
        return target.set_preserved_attributes(list(config.preserved_attributes))
    if kind == "ConvertCustomConfig":
        for quant_type, entries in config.observed_to_quantized_mapping.items():
            for observed, quantized in entries.items():
                where = f"ConvertCustomConfig.observed_to_quantized_mapping[{observed!r}]"
                target.set_observed_to_quantized_mapping(
                    classes(observed, where), classes(quantized, where),
                    quant_type_fn(quant_type))
        return target.set_preserved_attributes(list(config.preserved_attributes))
    for name, entry in config.standalone_module_names.items():
        target.set_standalone_module_name(
            name, mapping_fn(entry.qconfig_mapping), examples_fn(entry.example_inputs),
            recurse(entry.prepare_custom_config), backend_fn(entry.backend_config))
    for cls, entry in config.standalone_module_classes.items():
        target.set_standalone_module_class(
            classes(cls, f"PrepareCustomConfig.standalone_module_class[{cls!r}]"),
            mapping_fn(entry.qconfig_mapping), examples_fn(entry.example_inputs),
            recurse(entry.prepare_custom_config), backend_fn(entry.backend_config))
    for quant_type, entries in config.float_to_observed_mapping.items():
        for float_cls, observed in entries.items():
            where = f"PrepareCustomConfig.float_to_observed_mapping[{float_cls!r}]"
            target.set_float_to_observed_mapping(classes(float_cls, where),
                                                 classes(observed, where),
                                                 quant_type_fn(quant_type))
    target.set_non_traceable_module_names(list(config.non_traceable_module_names))
    target.set_non_traceable_module_classes([
        classes(c, "PrepareCustomConfig.non_traceable_module_classes")
        for c in config.non_traceable_module_classes])
    target.set_input_quantized_indexes(list(config.input_quantized_indexes))
    target.set_output_quantized_indexes(list(config.output_quantized_indexes))
    return target.set_preserved_attributes(list(config.preserved_attributes))


def custom_config_from_torch(config: Any, strict: bool = False,
                             type_map: dict | None = None) -> Any:
    """A torch Prepare/Convert/FuseCustomConfig -> the jaxq one."""
    from jaxq import custom_config as jcc
    from jaxq.interop.mapping import mapping_from_spec, torch_mapping_spec

    target = getattr(jcc, type(config).__name__)()
    return _convert_custom(
        config, target,
        classes=lambda obj, where: class_from_torch(obj, type_map, where),
        mapping_fn=lambda m: None if m is None else mapping_from_spec(
            torch_mapping_spec(m, type_map), strict),
        backend_fn=lambda b: None if b is None else backend_config_from_torch(b, strict),
        recurse=lambda c: None if c is None else custom_config_from_torch(c, strict,
                                                                           type_map),
        examples_fn=lambda e: tuple(_array_from_torch(v) for v in e),
        quant_type_fn=lambda q: jcc.QuantType(int(q)))


def custom_config_to_torch(config: Any, type_map: dict | None = None) -> Any:
    """A jaxq Prepare/Convert/FuseCustomConfig -> the torch one (needs torch).

    Standalone entries' backend configs cannot go back (jaxq BackendConfigs hold Flax
    patterns); such an entry raises, naming it.
    """
    from torch.ao.quantization import quant_type as tqt
    from torch.ao.quantization.fx import custom_config as tcc

    from jaxq.interop.mapping import jaxq_mapping_spec, torch_mapping_from_spec

    def backend_fn(backend: Any) -> Any:
        if backend is not None:
            raise ValueError(f"a standalone entry's backend_config {backend.name!r} cannot be "
                             "converted back to torch")
        return None

    target = getattr(tcc, type(config).__name__)()
    return _convert_custom(
        config, target,
        classes=lambda obj, where: class_to_torch(obj, type_map, where),
        mapping_fn=lambda m: None if m is None else torch_mapping_from_spec(
            jaxq_mapping_spec(m)),
        backend_fn=backend_fn,
        recurse=lambda c: None if c is None else custom_config_to_torch(c, type_map),
        examples_fn=lambda e: tuple(_array_to_torch(v) for v in e),
        quant_type_fn=lambda q: tqt.QuantType(int(q)))
