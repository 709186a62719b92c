"""Custom configs for the graph workflow: ``torch.ao.quantization.fx.custom_config``.

:class:`FuseCustomConfig`, :class:`PrepareCustomConfig`, :class:`ConvertCustomConfig` and
:class:`StandaloneModuleConfigEntry` with torch's chaining setters and ``to_dict`` /
``from_dict`` (same dict keys). Module classes are Flax NNX classes. :class:`QuantType` is
torch's ``torch.ao.quantization.quant_type.QuantType`` (the custom-module mappings are keyed
by it).

Example:
  >>> from jaxq.custom_config import PrepareCustomConfig
  >>> config = (PrepareCustomConfig().set_non_traceable_module_names(["head"])
  ...           .set_input_quantized_indexes([0]))
  >>> config.to_dict()
  {'non_traceable_module_name': ['head'], 'input_quantized_idxs': [0]}
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from jaxq.backend_config import BackendConfig
from jaxq.qconfig_mapping import QConfigMapping

__all__ = [
    "ConvertCustomConfig",
    "FuseCustomConfig",
    "PrepareCustomConfig",
    "QuantType",
    "StandaloneModuleConfigEntry",
]

STANDALONE_MODULE_NAME_DICT_KEY = "standalone_module_name"
STANDALONE_MODULE_CLASS_DICT_KEY = "standalone_module_class"
FLOAT_TO_OBSERVED_DICT_KEY = "float_to_observed_custom_module_class"
OBSERVED_TO_QUANTIZED_DICT_KEY = "observed_to_quantized_custom_module_class"
NON_TRACEABLE_MODULE_NAME_DICT_KEY = "non_traceable_module_name"
NON_TRACEABLE_MODULE_CLASS_DICT_KEY = "non_traceable_module_class"
INPUT_QUANTIZED_INDEXES_DICT_KEY = "input_quantized_idxs"
OUTPUT_QUANTIZED_INDEXES_DICT_KEY = "output_quantized_idxs"
PRESERVED_ATTRIBUTES_DICT_KEY = "preserved_attributes"


class QuantType(enum.IntEnum):
    """torch's quantization types (same members and values)."""

    DYNAMIC = 0
    STATIC = 1
    QAT = 2
    WEIGHT_ONLY = 3


_QUANT_TYPE_TO_STR = {
    QuantType.STATIC: "static",
    QuantType.DYNAMIC: "dynamic",
    QuantType.QAT: "qat",
    QuantType.WEIGHT_ONLY: "weight_only",
}


def _get_quant_type_to_str(quant_type: QuantType) -> str:
    return _QUANT_TYPE_TO_STR[_as_quant_type(quant_type)]


def _quant_type_from_str(name: str) -> QuantType:
    for quant_type, text in _QUANT_TYPE_TO_STR.items():
        if name == text:
            return quant_type
    raise ValueError(f"Unknown QuantType name '{name}'; accepted: "
                     f"{list(_QUANT_TYPE_TO_STR.values())}")


def _as_quant_type(quant_type: Any) -> QuantType:
    if isinstance(quant_type, QuantType):
        return quant_type
    # torch's QuantType is an IntEnum with the same values.
    if type(quant_type).__name__ == "QuantType" and isinstance(quant_type, int):
        return QuantType(int(quant_type))
    raise TypeError(f"quant_type={quant_type!r} must be a QuantType; accepted: "
                    f"{[q.name for q in QuantType]}")


def _check_class(value: Any, argument: str) -> None:
    if not isinstance(value, type):
        raise TypeError(f"{argument}={value!r} must be a class")


def _check_str_list(values: Any, argument: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise TypeError(f"{argument}={values!r} must be a list of str")
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"{argument} has {value!r}; entries must be str")
    return list(values)


def _check_index_list(values: Any, argument: str) -> list[int]:
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{argument}={values!r} must be a list of int")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TypeError(f"{argument} has {value!r}; entries must be non-negative ints")
    return list(values)


def _check_class_list(values: Any, argument: str) -> list[type]:
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{argument}={values!r} must be a list of classes")
    for value in values:
        _check_class(value, f"{argument} entry")
    return list(values)


@dataclasses.dataclass
class StandaloneModuleConfigEntry:
    """How a standalone submodule is prepared (None fields fall back to the parent's)."""

    qconfig_mapping: QConfigMapping | None
    example_inputs: tuple[Any, ...]
    prepare_custom_config: PrepareCustomConfig | None
    backend_config: BackendConfig | None

    def __post_init__(self):
        if self.qconfig_mapping is not None and not isinstance(self.qconfig_mapping,
                                                               QConfigMapping):
            raise TypeError(f"qconfig_mapping={self.qconfig_mapping!r} must be None or a "
                            "QConfigMapping")
        if not isinstance(self.example_inputs, tuple):
            raise TypeError(f"example_inputs={self.example_inputs!r} must be a tuple")
        if self.prepare_custom_config is not None and not isinstance(
                self.prepare_custom_config, PrepareCustomConfig):
            raise TypeError(f"prepare_custom_config={self.prepare_custom_config!r} must be None "
                            "or a PrepareCustomConfig")
        if self.backend_config is not None and not isinstance(self.backend_config,
                                                              BackendConfig):
            raise TypeError(f"backend_config={self.backend_config!r} must be None or a "
                            "BackendConfig")


class PrepareCustomConfig:
    """Custom configuration for ``prepare_fx`` / ``prepare_qat_fx`` (torch's setters)."""

    def __init__(self) -> None:
        self.standalone_module_names: dict[str, StandaloneModuleConfigEntry] = {}
        self.standalone_module_classes: dict[type, StandaloneModuleConfigEntry] = {}
        self.float_to_observed_mapping: dict[QuantType, dict[type, type]] = {}
        self.non_traceable_module_names: list[str] = []
        self.non_traceable_module_classes: list[type] = []
        self.input_quantized_indexes: list[int] = []
        self.output_quantized_indexes: list[int] = []
        self.preserved_attributes: list[str] = []

    def __repr__(self):
        nonempty = {k: v for k, v in self.__dict__.items() if len(v) > 0}
        return f"PrepareCustomConfig({nonempty})"

    def set_standalone_module_name(self, module_name: str,
                                   qconfig_mapping: QConfigMapping | None,
                                   example_inputs: tuple[Any, ...],
                                   prepare_custom_config: PrepareCustomConfig | None,
                                   backend_config: BackendConfig | None) -> PrepareCustomConfig:
        """Prepares the submodule called ``module_name`` as a standalone module."""
        if not isinstance(module_name, str):
            raise TypeError(f"module_name={module_name!r} must be a str")
        self.standalone_module_names[module_name] = StandaloneModuleConfigEntry(
            qconfig_mapping, example_inputs, prepare_custom_config, backend_config)
        return self

    def set_standalone_module_class(self, module_class: type,
                                    qconfig_mapping: QConfigMapping | None,
                                    example_inputs: tuple[Any, ...],
                                    prepare_custom_config: PrepareCustomConfig | None,
                                    backend_config: BackendConfig | None) -> PrepareCustomConfig:
        """Prepares every submodule of ``module_class`` as a standalone module."""
        _check_class(module_class, "module_class")
        self.standalone_module_classes[module_class] = StandaloneModuleConfigEntry(
            qconfig_mapping, example_inputs, prepare_custom_config, backend_config)
        return self

    def set_float_to_observed_mapping(self, float_class: type, observed_class: type,
                                      quant_type: QuantType = QuantType.STATIC
                                      ) -> PrepareCustomConfig:
        """Maps a custom float module class to its observed class (static only, as torch)."""
        _check_class(float_class, "float_class")
        _check_class(observed_class, "observed_class")
        quant_type = _as_quant_type(quant_type)
        if quant_type != QuantType.STATIC:
            raise ValueError("set_float_to_observed_mapping is currently only supported for "
                             f"static quantization, got quant_type={quant_type!r}")
        self.float_to_observed_mapping.setdefault(quant_type, {})[float_class] = observed_class
        return self

    def set_non_traceable_module_names(self, module_names: list[str]) -> PrepareCustomConfig:
        """Submodules (by name) that are called, not traced."""
        self.non_traceable_module_names = _check_str_list(module_names, "module_names")
        return self

    def set_non_traceable_module_classes(self, module_classes: list[type]
                                         ) -> PrepareCustomConfig:
        """Submodules (by class) that are called, not traced."""
        self.non_traceable_module_classes = _check_class_list(module_classes, "module_classes")
        return self

    def set_input_quantized_indexes(self, indexes: list[int]) -> PrepareCustomConfig:
        """Indexes of the model inputs that arrive quantized (others are float)."""
        self.input_quantized_indexes = _check_index_list(indexes, "indexes")
        return self

    def set_output_quantized_indexes(self, indexes: list[int]) -> PrepareCustomConfig:
        """Indexes of the model outputs that leave quantized (others are float)."""
        self.output_quantized_indexes = _check_index_list(indexes, "indexes")
        return self

    def set_preserved_attributes(self, attributes: list[str]) -> PrepareCustomConfig:
        """Attributes kept on the prepared model even if ``__call__`` does not use them."""
        self.preserved_attributes = _check_str_list(attributes, "attributes")
        return self

    @classmethod
    def from_dict(cls, prepare_custom_config_dict: dict[str, Any]) -> PrepareCustomConfig:
        """Builds the config from torch's dict form (see :meth:`to_dict` for the keys).

        Raises:
          ValueError: when a standalone entry's qconfig mapping, prepare custom config or
            backend config is of the wrong kind (as torch).
        """
        if not isinstance(prepare_custom_config_dict, dict):
            raise TypeError(f"prepare_custom_config_dict={prepare_custom_config_dict!r} must "
                            "be a dict")

        def _convert(obj: Any, dict_key: str, kind: type) -> Any:
            if obj is None or isinstance(obj, kind):
                return obj
            if isinstance(obj, dict):
                return kind.from_dict(obj)
            raise ValueError(f"Expected {kind.__name__} in prepare_custom_config_dict"
                             f"[\"{dict_key}\"], got '{type(obj)}'")

        d = prepare_custom_config_dict
        conf = cls()
        for key, setter in ((STANDALONE_MODULE_NAME_DICT_KEY, conf.set_standalone_module_name),
                            (STANDALONE_MODULE_CLASS_DICT_KEY,
                             conf.set_standalone_module_class)):
            for entry in d.get(key, []):
                if not isinstance(entry, (tuple, list)) or len(entry) != 5:
                    raise ValueError(f"prepare_custom_config_dict[{key!r}] entries must be "
                                     f"5-tuples, got {entry!r}")
                name_or_class, qconfig_dict, example_inputs, child_dict, backend_dict = entry
                setter(name_or_class, _convert(qconfig_dict, key, QConfigMapping),
                       example_inputs, _convert(child_dict, key, PrepareCustomConfig),
                       _convert(backend_dict, key, BackendConfig))
        for quant_type_name, mapping in d.get(FLOAT_TO_OBSERVED_DICT_KEY, {}).items():
            quant_type = _quant_type_from_str(quant_type_name)
            for float_class, observed_class in mapping.items():
                conf.set_float_to_observed_mapping(float_class, observed_class, quant_type)
        conf.set_non_traceable_module_names(d.get(NON_TRACEABLE_MODULE_NAME_DICT_KEY, []))
        conf.set_non_traceable_module_classes(d.get(NON_TRACEABLE_MODULE_CLASS_DICT_KEY, []))
        conf.set_input_quantized_indexes(d.get(INPUT_QUANTIZED_INDEXES_DICT_KEY, []))
        conf.set_output_quantized_indexes(d.get(OUTPUT_QUANTIZED_INDEXES_DICT_KEY, []))
        conf.set_preserved_attributes(d.get(PRESERVED_ATTRIBUTES_DICT_KEY, []))
        return conf

    def to_dict(self) -> dict[str, Any]:
        """torch's dict form: only non-empty entries.

        Keys: ``"standalone_module_name"`` / ``"standalone_module_class"`` (lists of
        ``(name_or_class, qconfig_dict, example_inputs, prepare_custom_config_dict,
        backend_config)``), ``"float_to_observed_custom_module_class"`` (``{"static":
        {float_class: observed_class}}``), ``"non_traceable_module_name"``,
        ``"non_traceable_module_class"``, ``"input_quantized_idxs"``,
        ``"output_quantized_idxs"``, ``"preserved_attributes"``.
        """

        def _make_tuple(key: Any, entry: StandaloneModuleConfigEntry):
            qconfig_dict = entry.qconfig_mapping.to_dict() if entry.qconfig_mapping else None
            child_dict = (entry.prepare_custom_config.to_dict()
                          if entry.prepare_custom_config else None)
            return (key, qconfig_dict, entry.example_inputs, child_dict, entry.backend_config)

        d: dict[str, Any] = {}
        for module_name, entry in self.standalone_module_names.items():
            d.setdefault(STANDALONE_MODULE_NAME_DICT_KEY, []).append(
                _make_tuple(module_name, entry))
        for module_class, entry in self.standalone_module_classes.items():
            d.setdefault(STANDALONE_MODULE_CLASS_DICT_KEY, []).append(
                _make_tuple(module_class, entry))
        for quant_type, mapping in self.float_to_observed_mapping.items():
            d.setdefault(FLOAT_TO_OBSERVED_DICT_KEY, {})[_get_quant_type_to_str(quant_type)] = (
                mapping)
        if self.non_traceable_module_names:
            d[NON_TRACEABLE_MODULE_NAME_DICT_KEY] = self.non_traceable_module_names
        if self.non_traceable_module_classes:
            d[NON_TRACEABLE_MODULE_CLASS_DICT_KEY] = self.non_traceable_module_classes
        if self.input_quantized_indexes:
            d[INPUT_QUANTIZED_INDEXES_DICT_KEY] = self.input_quantized_indexes
        if self.output_quantized_indexes:
            d[OUTPUT_QUANTIZED_INDEXES_DICT_KEY] = self.output_quantized_indexes
        if self.preserved_attributes:
            d[PRESERVED_ATTRIBUTES_DICT_KEY] = self.preserved_attributes
        return d


class ConvertCustomConfig:
    """Custom configuration for ``convert_fx`` (torch's setters)."""

    def __init__(self) -> None:
        self.observed_to_quantized_mapping: dict[QuantType, dict[type, type]] = {}
        self.preserved_attributes: list[str] = []

    def __repr__(self):
        nonempty = {k: v for k, v in self.__dict__.items() if len(v) > 0}
        return f"ConvertCustomConfig({nonempty})"

    def set_observed_to_quantized_mapping(self, observed_class: type, quantized_class: type,
                                          quant_type: QuantType = QuantType.STATIC
                                          ) -> ConvertCustomConfig:
        """Maps a custom observed module class to its quantized class."""
        _check_class(observed_class, "observed_class")
        _check_class(quantized_class, "quantized_class")
        quant_type = _as_quant_type(quant_type)
        self.observed_to_quantized_mapping.setdefault(quant_type, {})[observed_class] = (
            quantized_class)
        return self

    def set_preserved_attributes(self, attributes: list[str]) -> ConvertCustomConfig:
        """Attributes kept on the converted model even if ``__call__`` does not use them."""
        self.preserved_attributes = _check_str_list(attributes, "attributes")
        return self

    @classmethod
    def from_dict(cls, convert_custom_config_dict: dict[str, Any]) -> ConvertCustomConfig:
        """Builds the config from torch's dict form
        (``"observed_to_quantized_custom_module_class"``, ``"preserved_attributes"``)."""
        if not isinstance(convert_custom_config_dict, dict):
            raise TypeError(f"convert_custom_config_dict={convert_custom_config_dict!r} must "
                            "be a dict")
        conf = cls()
        for quant_type_name, mapping in convert_custom_config_dict.get(
                OBSERVED_TO_QUANTIZED_DICT_KEY, {}).items():
            quant_type = _quant_type_from_str(quant_type_name)
            for observed_class, quantized_class in mapping.items():
                conf.set_observed_to_quantized_mapping(observed_class, quantized_class,
                                                       quant_type)
        conf.set_preserved_attributes(
            convert_custom_config_dict.get(PRESERVED_ATTRIBUTES_DICT_KEY, []))
        return conf

    def to_dict(self) -> dict[str, Any]:
        """torch's dict form: only non-empty entries."""
        d: dict[str, Any] = {}
        for quant_type, mapping in self.observed_to_quantized_mapping.items():
            d.setdefault(OBSERVED_TO_QUANTIZED_DICT_KEY, {})[
                _get_quant_type_to_str(quant_type)] = mapping
        if self.preserved_attributes:
            d[PRESERVED_ATTRIBUTES_DICT_KEY] = self.preserved_attributes
        return d


class FuseCustomConfig:
    """Custom configuration for ``fuse_fx`` (torch's setters)."""

    def __init__(self) -> None:
        self.preserved_attributes: list[str] = []

    def __repr__(self):
        nonempty = {k: v for k, v in self.__dict__.items() if len(v) > 0}
        return f"FuseCustomConfig({nonempty})"

    def set_preserved_attributes(self, attributes: list[str]) -> FuseCustomConfig:
        """Attributes kept on the fused model even if ``__call__`` does not use them."""
        self.preserved_attributes = _check_str_list(attributes, "attributes")
        return self

    @classmethod
    def from_dict(cls, fuse_custom_config_dict: dict[str, Any]) -> FuseCustomConfig:
        """Builds the config from torch's dict form (``"preserved_attributes"``)."""
        if not isinstance(fuse_custom_config_dict, dict):
            raise TypeError(f"fuse_custom_config_dict={fuse_custom_config_dict!r} must be a "
                            "dict")
        return cls().set_preserved_attributes(
            fuse_custom_config_dict.get(PRESERVED_ATTRIBUTES_DICT_KEY, []))

    def to_dict(self) -> dict[str, Any]:
        """torch's dict form: only non-empty entries."""
        d: dict[str, Any] = {}
        if self.preserved_attributes:
            d[PRESERVED_ATTRIBUTES_DICT_KEY] = self.preserved_attributes
        return d
