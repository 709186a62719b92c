"""BackendConfig: which patterns a backend can quantize, with which dtypes, and how.

Mirrors ``torch.ao.quantization.backend_config.backend_config``. Patterns are Flax/JAX
objects (``nnx.Linear``, ``(nnx.Conv, jax.nn.relu)``, ``operator.add``, ``"reshape"``) where
torch uses torch ones; dtypes are :class:`jaxq.QuantDType` (torch dtypes are accepted and
converted). :class:`DTypeWithConstraints` and :class:`DTypeConfig` are frozen and hashable;
:class:`BackendPatternConfig` and :class:`BackendConfig` keep torch's chaining setters.

Example:
  >>> import jaxq
  >>> from flax import nnx
  >>> from jaxq.backend_config import BackendConfig, BackendPatternConfig, DTypeConfig
  >>> int8 = DTypeConfig(input_dtype=jaxq.quint8, output_dtype=jaxq.quint8,
  ...                    weight_dtype=jaxq.qint8, bias_dtype=jaxq.float32)
  >>> config = BackendConfig("mine").set_backend_pattern_config(
  ...     BackendPatternConfig(nnx.Linear).add_dtype_config(int8))
  >>> config.configs[0].dtype_configs[0].input_dtype
  jaxq.quint8
"""

from __future__ import annotations

import dataclasses
import enum
import numbers
from collections.abc import Callable
from typing import Any

from jaxq.core.dtypes import QuantDType, as_quant_dtype

__all__ = [
    "BackendConfig",
    "BackendPatternConfig",
    "DTypeConfig",
    "DTypeWithConstraints",
    "ObservationType",
]

# DTypeConfig dict keys (torch's).
INPUT_DTYPE_DICT_KEY = "input_dtype"
OUTPUT_DTYPE_DICT_KEY = "output_dtype"
WEIGHT_DTYPE_DICT_KEY = "weight_dtype"
BIAS_DTYPE_DICT_KEY = "bias_dtype"
IS_DYNAMIC_DICT_KEY = "is_dynamic"

# BackendConfig dict keys.
NAME_DICT_KEY = "name"
CONFIGS_DICT_KEY = "configs"

# BackendPatternConfig dict keys.
PATTERN_DICT_KEY = "pattern"
PATTERN_COMPLEX_FORMAT_DICT_KEY = "pattern_complex_format"
OBSERVATION_TYPE_DICT_KEY = "observation_type"
DTYPE_CONFIGS_DICT_KEY = "dtype_configs"
ROOT_MODULE_DICT_KEY = "root_module"
QAT_MODULE_DICT_KEY = "qat_module"
REFERENCE_QUANTIZED_MODULE_DICT_KEY = "reference_quantized_module_for_root"
FUSED_MODULE_DICT_KEY = "fused_module"
FUSER_METHOD_DICT_KEY = "fuser_method"
ROOT_NODE_GETTER_DICT_KEY = "root_node_getter"
EXTRA_INPUTS_GETTER_DICT_KEY = "extra_inputs_getter"
NUM_TENSOR_ARGS_TO_OBSERVATION_TYPE_DICT_KEY = "num_tensor_args_to_observation_type"
INPUT_TYPE_TO_INDEX_DICT_KEY = "input_type_to_index"


class ObservationType(enum.Enum):
    """How an operator pattern is observed (torch's enum, same members and values)."""

    OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT = 0
    """Input and output get different observers (conv, linear, softmax)."""

    OUTPUT_SHARE_OBSERVER_WITH_INPUT = 1
    """The output shares the input's observer instance (cat, max pool)."""

    INPUT_OUTPUT_NOT_OBSERVED = 2
    """Neither input nor output is observed (x.shape)."""


def _optional_dtype(value: Any, argument: str) -> QuantDType | None:
    return None if value is None else as_quant_dtype(value, argument)


def _optional_number(value: Any, argument: str, kind=numbers.Real):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{argument}={value!r} must be None or a {kind.__name__} number")
    return value


@dataclasses.dataclass(frozen=True)
class DTypeWithConstraints:
    """A dtype plus the constraints a QConfig must satisfy to be used with it.

    Fields as in torch: ``quant_min_lower_bound`` / ``quant_max_upper_bound`` bound the
    observer's quant range; ``scale_min_lower_bound`` / ``scale_max_upper_bound`` bound the
    scale (only the lower bound, compared with the observer's ``eps``, is enforced by
    torch); ``scale_exact_match`` / ``zero_point_exact_match`` are the fixed qparams of ops
    such as sigmoid and tanh.

    Raises:
      TypeError: naming the field, when ``dtype`` is not a dtype or a bound not a number.
    """

    dtype: QuantDType | None = None
    quant_min_lower_bound: int | float | None = None
    quant_max_upper_bound: int | float | None = None
    scale_min_lower_bound: int | float | None = None
    scale_max_upper_bound: int | float | None = None
    scale_exact_match: float | None = None
    zero_point_exact_match: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "dtype", _optional_dtype(self.dtype, "dtype"))
        for name in ("quant_min_lower_bound", "quant_max_upper_bound", "scale_min_lower_bound",
                     "scale_max_upper_bound", "scale_exact_match"):
            _optional_number(getattr(self, name), name)
        _optional_number(self.zero_point_exact_match, "zero_point_exact_match", numbers.Integral)


def _is_torch_dtype_with_constraints(value: Any) -> bool:
    return (type(value).__name__ == "DTypeWithConstraints"
            and type(value).__module__.startswith("torch"))


def _with_constraints(value: Any, argument: str) -> DTypeWithConstraints:
    if isinstance(value, DTypeWithConstraints):
        return value
    if _is_torch_dtype_with_constraints(value):
        # torch's dict form carries its own DTypeWithConstraints; the fields are the same.
        return DTypeWithConstraints(**dataclasses.asdict(value))
    return DTypeWithConstraints(dtype=_optional_dtype(value, argument))


@dataclasses.dataclass(frozen=True, init=False)
class DTypeConfig:
    """The dtypes a pattern's reference quantize ops use for input, output, weight, bias.

    Args:
      input_dtype: a dtype or :class:`DTypeWithConstraints` (or None). torch dtypes and
        torch's DTypeWithConstraints are converted.
      output_dtype: same, for the output.
      weight_dtype: same, for the weight.
      bias_dtype: a dtype or None.
      is_dynamic: whether the activation is quantized dynamically (or None: unspecified).

    Raises:
      TypeError: naming the argument, for anything that is not a dtype.

    Example:
      >>> import jaxq
      >>> DTypeConfig(input_dtype=jaxq.quint8, output_dtype=jaxq.quint8).to_dict()
      ... # doctest: +ELLIPSIS
      {'input_dtype': DTypeWithConstraints(dtype=jaxq.quint8, ...), 'output_dtype': ...}
    """

    input_dtype_with_constraints: DTypeWithConstraints
    output_dtype_with_constraints: DTypeWithConstraints
    weight_dtype_with_constraints: DTypeWithConstraints
    bias_dtype: QuantDType | None
    is_dynamic: bool | None

    def __init__(self, input_dtype=None, output_dtype=None, weight_dtype=None,
                 bias_dtype=None, is_dynamic=None):
        if is_dynamic is not None and not isinstance(is_dynamic, bool):
            raise TypeError(f"is_dynamic={is_dynamic!r} must be None or a bool")
        object.__setattr__(self, "input_dtype_with_constraints",
                           _with_constraints(input_dtype, "input_dtype"))
        object.__setattr__(self, "output_dtype_with_constraints",
                           _with_constraints(output_dtype, "output_dtype"))
        object.__setattr__(self, "weight_dtype_with_constraints",
                           _with_constraints(weight_dtype, "weight_dtype"))
        object.__setattr__(self, "bias_dtype", _optional_dtype(bias_dtype, "bias_dtype"))
        object.__setattr__(self, "is_dynamic", is_dynamic)

    @property
    def input_dtype(self) -> QuantDType | None:
        return self.input_dtype_with_constraints.dtype

    @property
    def output_dtype(self) -> QuantDType | None:
        return self.output_dtype_with_constraints.dtype

    @property
    def weight_dtype(self) -> QuantDType | None:
        return self.weight_dtype_with_constraints.dtype

    @classmethod
    def from_dict(cls, dtype_config_dict: dict[str, Any]) -> DTypeConfig:
        """Builds a DTypeConfig from torch's dict form (all keys optional).

        Raises:
          ValueError: naming the key, when a dtype entry is neither a dtype nor a
            :class:`DTypeWithConstraints` (torch raises ValueError too).
        """
        if not isinstance(dtype_config_dict, dict):
            raise TypeError(f"dtype_config_dict={dtype_config_dict!r} must be a dict")
        unknown = set(dtype_config_dict) - {INPUT_DTYPE_DICT_KEY, OUTPUT_DTYPE_DICT_KEY,
                                            WEIGHT_DTYPE_DICT_KEY, BIAS_DTYPE_DICT_KEY,
                                            IS_DYNAMIC_DICT_KEY}
        if unknown:
            raise ValueError(f"dtype_config_dict has unknown keys {sorted(unknown)}")
        values = {}
        for key in (INPUT_DTYPE_DICT_KEY, OUTPUT_DTYPE_DICT_KEY, WEIGHT_DTYPE_DICT_KEY):
            value = dtype_config_dict.get(key)
            if _is_torch_dtype_with_constraints(value):
                value = _with_constraints(value, key)
            elif value is not None and not isinstance(value, DTypeWithConstraints):
                try:
                    value = as_quant_dtype(value, key)
                except TypeError as error:
                    raise ValueError(f"Expected {key} to be a dtype or DTypeWithConstraints: "
                                     f"{error}") from None
            values[key] = value
        return cls(values[INPUT_DTYPE_DICT_KEY], values[OUTPUT_DTYPE_DICT_KEY],
                   values[WEIGHT_DTYPE_DICT_KEY], dtype_config_dict.get(BIAS_DTYPE_DICT_KEY),
                   dtype_config_dict.get(IS_DYNAMIC_DICT_KEY))

    def to_dict(self) -> dict[str, Any]:
        """torch's dict form: only the entries that are set."""
        result: dict[str, Any] = {}
        if self.input_dtype is not None:
            result[INPUT_DTYPE_DICT_KEY] = self.input_dtype_with_constraints
        if self.output_dtype is not None:
            result[OUTPUT_DTYPE_DICT_KEY] = self.output_dtype_with_constraints
        if self.weight_dtype is not None:
            result[WEIGHT_DTYPE_DICT_KEY] = self.weight_dtype_with_constraints
        if self.bias_dtype is not None:
            result[BIAS_DTYPE_DICT_KEY] = self.bias_dtype
        if self.is_dynamic is not None:
            result[IS_DYNAMIC_DICT_KEY] = self.is_dynamic
        return result


def _check_callable_or_none(value: Any, argument: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{argument}={value!r} must be None or callable (a module class or "
                        "a function)")


class BackendPatternConfig:
    """How one operator pattern is quantized: dtypes, observation, fusion, QAT and reference.

    A pattern is a module type, a function, a jax.Array method name, or a 2- or 3-tuple of
    those in forward order (``(nnx.Conv, nnx.BatchNorm, jax.nn.relu)``).

    Args:
      pattern: the pattern (or None, then set it later).
    """

    def __init__(self, pattern: Any = None):
        self.pattern: Any = None
        self.observation_type = ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT
        self.dtype_configs: list[DTypeConfig] = []
        self.root_module: Any = None
        self.qat_module: Any = None
        self.reference_quantized_module: Any = None
        self.fused_module: Any = None
        self.fuser_method: Callable | None = None
        # Temporary/internal configs, as in torch.
        self._root_node_getter: Callable | None = None
        self._extra_inputs_getter: Callable | None = None
        self._num_tensor_args_to_observation_type: dict[int, ObservationType] = {}
        self._input_type_to_index: dict[str, int] = {}
        self._pattern_complex_format: Any = None
        if pattern is not None:
            self.set_pattern(pattern)

    def __repr__(self):
        nonempty = {k: v for k, v in self.__dict__.items()
                    if (not isinstance(v, (list, dict)) and v is not None)
                    or (isinstance(v, (list, dict)) and len(v) > 0)}
        return f"BackendPatternConfig({nonempty})"

    def set_pattern(self, pattern: Any) -> BackendPatternConfig:
        """Sets the pattern (forward order; tuples have 2 or 3 elements)."""
        if self._pattern_complex_format is not None:
            raise ValueError("Only one of 'pattern' or 'pattern_complex_format' can be set")
        _check_pattern(pattern, "pattern")
        self.pattern = pattern
        return self

    def set_observation_type(self, observation_type: ObservationType) -> BackendPatternConfig:
        """Sets how observers are inserted for this pattern."""
        if not isinstance(observation_type, ObservationType):
            raise TypeError(f"observation_type={observation_type!r} must be an ObservationType; "
                            f"accepted: {[m.name for m in ObservationType]}")
        self.observation_type = observation_type
        return self

    def add_dtype_config(self, dtype_config: DTypeConfig) -> BackendPatternConfig:
        """Adds one supported set of dtypes."""
        if not isinstance(dtype_config, DTypeConfig):
            raise TypeError(f"dtype_config={dtype_config!r} must be a DTypeConfig")
        self.dtype_configs.append(dtype_config)
        return self

    def set_dtype_configs(self, dtype_configs: list[DTypeConfig]) -> BackendPatternConfig:
        """Replaces all supported dtype sets."""
        dtype_configs = list(dtype_configs)
        for index, dtype_config in enumerate(dtype_configs):
            if not isinstance(dtype_config, DTypeConfig):
                raise TypeError(f"dtype_configs[{index}]={dtype_config!r} must be a DTypeConfig")
        self.dtype_configs = dtype_configs
        return self

    def set_root_module(self, root_module: Any) -> BackendPatternConfig:
        """Sets the float module at the root of the pattern (swapped for the reference one)."""
        _check_callable_or_none(root_module, "root_module")
        self.root_module = root_module
        return self

    def set_qat_module(self, qat_module: Any) -> BackendPatternConfig:
        """Sets the QAT module for this pattern."""
        _check_callable_or_none(qat_module, "qat_module")
        self.qat_module = qat_module
        return self

    def set_reference_quantized_module(self, reference_quantized_module: Any
                                       ) -> BackendPatternConfig:
        """Sets the reference quantized module for this pattern's root module."""
        _check_callable_or_none(reference_quantized_module, "reference_quantized_module")
        self.reference_quantized_module = reference_quantized_module
        return self

    def set_fused_module(self, fused_module: Any) -> BackendPatternConfig:
        """Sets the fused module this pattern fuses into."""
        _check_callable_or_none(fused_module, "fused_module")
        self.fused_module = fused_module
        return self

    def set_fuser_method(self, fuser_method: Callable | None) -> BackendPatternConfig:
        """Sets ``fuser_method(is_qat, *modules_in_pattern) -> fused module``."""
        _check_callable_or_none(fuser_method, "fuser_method")
        self.fuser_method = fuser_method
        return self

    def _set_root_node_getter(self, root_node_getter: Callable | None) -> BackendPatternConfig:
        _check_callable_or_none(root_node_getter, "root_node_getter")
        self._root_node_getter = root_node_getter
        return self

    def _set_extra_inputs_getter(self, extra_inputs_getter: Callable | None
                                 ) -> BackendPatternConfig:
        _check_callable_or_none(extra_inputs_getter, "extra_inputs_getter")
        self._extra_inputs_getter = extra_inputs_getter
        return self

    def _set_num_tensor_args_to_observation_type(
            self, num_tensor_args_to_observation_type: dict[int, ObservationType]
    ) -> BackendPatternConfig:
        for key, value in dict(num_tensor_args_to_observation_type).items():
            if not isinstance(key, int) or not isinstance(value, ObservationType):
                raise TypeError("num_tensor_args_to_observation_type must map int to "
                                f"ObservationType, got {key!r}: {value!r}")
        self._num_tensor_args_to_observation_type = dict(num_tensor_args_to_observation_type)
        return self

    def _set_input_type_to_index(self, input_type_to_index: dict[str, int]
                                 ) -> BackendPatternConfig:
        for key, value in dict(input_type_to_index).items():
            if not isinstance(key, str) or not isinstance(value, int):
                raise TypeError(f"input_type_to_index must map str to int, got {key!r}: {value!r}")
        self._input_type_to_index = dict(input_type_to_index)
        return self

    def _set_pattern_complex_format(self, pattern: Any) -> BackendPatternConfig:
        """Sets the pattern in torch's reversed nested tuple format."""
        if self.pattern is not None:
            raise ValueError("Only one of 'pattern' or 'pattern_complex_format' can be set")
        self._pattern_complex_format = pattern
        return self

    @classmethod
    def from_dict(cls, backend_pattern_config_dict: dict[str, Any]) -> BackendPatternConfig:
        """Builds a config from torch's dict form (keys as in :meth:`to_dict`).

        Raises:
          ValueError: when an entry of ``"dtype_configs"`` is neither a DTypeConfig nor a dict.
        """
        if not isinstance(backend_pattern_config_dict, dict):
            raise TypeError(f"backend_pattern_config_dict={backend_pattern_config_dict!r} must "
                            "be a dict")

        def _get_dtype_config(obj: Any) -> DTypeConfig:
            if isinstance(obj, DTypeConfig):
                return obj
            if isinstance(obj, dict):
                return DTypeConfig.from_dict(obj)
            raise ValueError("Expected a list of DTypeConfigs in "
                             f"backend_pattern_config_dict[\"{DTYPE_CONFIGS_DICT_KEY}\"], "
                             f"got '{type(obj)}'")

        d = backend_pattern_config_dict
        conf = cls()
        if PATTERN_DICT_KEY in d:
            conf.set_pattern(d[PATTERN_DICT_KEY])
        if OBSERVATION_TYPE_DICT_KEY in d:
            conf.set_observation_type(d[OBSERVATION_TYPE_DICT_KEY])
        for dtype_config in d.get(DTYPE_CONFIGS_DICT_KEY, []):
            conf.add_dtype_config(_get_dtype_config(dtype_config))
        conf.set_root_module(d.get(ROOT_MODULE_DICT_KEY))
        conf.set_qat_module(d.get(QAT_MODULE_DICT_KEY))
        conf.set_reference_quantized_module(d.get(REFERENCE_QUANTIZED_MODULE_DICT_KEY))
        conf.set_fused_module(d.get(FUSED_MODULE_DICT_KEY))
        conf.set_fuser_method(d.get(FUSER_METHOD_DICT_KEY))
        conf._set_root_node_getter(d.get(ROOT_NODE_GETTER_DICT_KEY))
        conf._set_extra_inputs_getter(d.get(EXTRA_INPUTS_GETTER_DICT_KEY))
        conf._set_num_tensor_args_to_observation_type(
            d.get(NUM_TENSOR_ARGS_TO_OBSERVATION_TYPE_DICT_KEY, {}))
        conf._set_input_type_to_index(d.get(INPUT_TYPE_TO_INDEX_DICT_KEY, {}))
        if PATTERN_COMPLEX_FORMAT_DICT_KEY in d:
            conf._set_pattern_complex_format(d[PATTERN_COMPLEX_FORMAT_DICT_KEY])
        return conf

    def to_dict(self) -> dict[str, Any]:
        """torch's dict form: observation type and dtype configs always, the rest if set."""
        result: dict[str, Any] = {
            OBSERVATION_TYPE_DICT_KEY: self.observation_type,
            DTYPE_CONFIGS_DICT_KEY: [c.to_dict() for c in self.dtype_configs],
        }
        optional = [
            (PATTERN_DICT_KEY, self.pattern),
            (ROOT_MODULE_DICT_KEY, self.root_module),
            (QAT_MODULE_DICT_KEY, self.qat_module),
            (REFERENCE_QUANTIZED_MODULE_DICT_KEY, self.reference_quantized_module),
            (FUSED_MODULE_DICT_KEY, self.fused_module),
            (FUSER_METHOD_DICT_KEY, self.fuser_method),
            (ROOT_NODE_GETTER_DICT_KEY, self._root_node_getter),
            (EXTRA_INPUTS_GETTER_DICT_KEY, self._extra_inputs_getter),
        ]
        for key, value in optional:
            if value is not None:
                result[key] = value
        if self._num_tensor_args_to_observation_type:
            result[NUM_TENSOR_ARGS_TO_OBSERVATION_TYPE_DICT_KEY] = (
                self._num_tensor_args_to_observation_type)
        if self._input_type_to_index:
            result[INPUT_TYPE_TO_INDEX_DICT_KEY] = self._input_type_to_index
        if self._pattern_complex_format is not None:
            result[PATTERN_COMPLEX_FORMAT_DICT_KEY] = self._pattern_complex_format
        return result


def _check_pattern(pattern: Any, argument: str) -> None:
    if pattern is None:
        raise ValueError(f"{argument} must not be None")
    elements = pattern if isinstance(pattern, tuple) else (pattern,)
    if isinstance(pattern, tuple) and len(pattern) not in (2, 3):
        raise ValueError(f"{argument}={pattern!r}: expected a tuple with 2 or 3 elements")
    for element in elements:
        if not (isinstance(element, str) or callable(element)):
            raise TypeError(f"{argument} element {element!r} must be a module type, a "
                            "function or a method name string")


def pattern_in_reversed_nested_tuple_format(config: BackendPatternConfig) -> Any:
    """torch's internal pattern key: ``(a, b)`` -> ``(b, a)``, ``(a, b, c)`` -> ``(c, (b, a))``."""
    if config._pattern_complex_format is not None:
        return config._pattern_complex_format
    if config.pattern is None:
        raise ValueError("Either 'pattern' or 'pattern_complex_format' must be specified")
    if not isinstance(config.pattern, tuple):
        return config.pattern
    if len(config.pattern) == 2:
        a, b = config.pattern
        return (b, a)
    if len(config.pattern) == 3:
        a, b, c = config.pattern
        return (c, (b, a))
    raise ValueError(f"Expected a tuple with 2 or 3 elements, got: {config.pattern}")


class BackendConfig:
    """The set of patterns a backend can quantize, keyed by pattern (later ones override).

    Args:
      name: the backend's name.
    """

    def __init__(self, name: str = ""):
        if not isinstance(name, str):
            raise TypeError(f"name={name!r} must be a str")
        self.name = name
        # Keyed by torch's reversed nested tuple format, so duplicates override.
        self._pattern_complex_format_to_config: dict[Any, BackendPatternConfig] = {}

    def __repr__(self):
        return f"BackendConfig({self.__dict__})"

    def set_name(self, name: str) -> BackendConfig:
        """Sets the backend's name."""
        if not isinstance(name, str):
            raise TypeError(f"name={name!r} must be a str")
        self.name = name
        return self

    def set_backend_pattern_config(self, config: BackendPatternConfig) -> BackendConfig:
        """Adds one pattern config, overriding an existing one for the same pattern."""
        if not isinstance(config, BackendPatternConfig):
            raise TypeError(f"config={config!r} must be a BackendPatternConfig")
        key = pattern_in_reversed_nested_tuple_format(config)
        self._pattern_complex_format_to_config[key] = config
        return self

    def set_backend_pattern_configs(self, configs: list[BackendPatternConfig]) -> BackendConfig:
        """Adds several pattern configs (each overriding an existing one for its pattern)."""
        for config in configs:
            self.set_backend_pattern_config(config)
        return self

    @property
    def configs(self) -> list[BackendPatternConfig]:
        """A copy of the list of pattern configs, in insertion order."""
        return list(self._pattern_complex_format_to_config.values())

    @classmethod
    def from_dict(cls, backend_config_dict: dict[str, Any]) -> BackendConfig:
        """Builds a BackendConfig from ``{"name": ..., "configs": [...]}``.

        Raises:
          ValueError: when an entry of ``"configs"`` is neither a BackendPatternConfig nor a
            dict (as torch).
        """
        if not isinstance(backend_config_dict, dict):
            raise TypeError(f"backend_config_dict={backend_config_dict!r} must be a dict")
        conf = cls(backend_config_dict.get(NAME_DICT_KEY, ""))
        for entry in backend_config_dict.get(CONFIGS_DICT_KEY, []):
            if isinstance(entry, BackendPatternConfig):
                conf.set_backend_pattern_config(entry)
            elif isinstance(entry, dict):
                conf.set_backend_pattern_config(BackendPatternConfig.from_dict(entry))
            else:
                raise ValueError(
                    f"Expected backend_config_dict['{CONFIGS_DICT_KEY}'] to be a dictionary")
        return conf

    def to_dict(self) -> dict[str, Any]:
        """``{"name": name, "configs": [config.to_dict(), ...]}``."""
        return {NAME_DICT_KEY: self.name, CONFIGS_DICT_KEY: [c.to_dict() for c in self.configs]}
