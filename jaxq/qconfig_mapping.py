"""QConfigMapping: which QConfig each module / function / method of a model gets.

Mirrors ``torch.ao.quantization.qconfig_mapping``. Object types are Flax/JAX things
(``nnx.Linear``, ``nnx.Conv``, ``jax.nn.relu``, ``operator.add``, ``"reshape"``) where
torch's are torch ones. The resolver methods (:meth:`QConfigMapping.qconfig_for_module`,
:meth:`~QConfigMapping.qconfig_for_function`, :meth:`~QConfigMapping.qconfig_for_method`)
implement torch's precedence, which the eager and graph workflows call:

    global < object_type < module_name_regex (first registered match wins)
           < module_name (falls back through parent prefixes)
           < module_name_object_type_order

Example:
  >>> from flax import nnx
  >>> from jaxq.qconfig_mapping import QConfigMapping
  >>> mapping = (QConfigMapping().set_global("q_global")
  ...            .set_object_type(nnx.Linear, "q_linear")
  ...            .set_module_name("block.fc2", None))
  >>> mapping.qconfig_for_module("block.fc1", nnx.Linear)
  'q_linear'
  >>> mapping.qconfig_for_module("block.fc2", nnx.Linear) is None
  True
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = [
    "QConfigMapping",
    "get_default_qconfig_mapping",
    "get_default_qat_qconfig_mapping",
]

_GLOBAL_DICT_KEY = ""
_OBJECT_TYPE_DICT_KEY = "object_type"
_MODULE_NAME_REGEX_DICT_KEY = "module_name_regex"
_MODULE_NAME_DICT_KEY = "module_name"
_MODULE_NAME_OBJECT_TYPE_ORDER_DICT_KEY = "module_name_object_type_order"
_DICT_KEYS = (_GLOBAL_DICT_KEY, _OBJECT_TYPE_DICT_KEY, _MODULE_NAME_REGEX_DICT_KEY,
              _MODULE_NAME_DICT_KEY, _MODULE_NAME_OBJECT_TYPE_ORDER_DICT_KEY)

_QCONFIG_STYLE_ORDER: list[str] = [
    "global_qconfig",
    "object_type_qconfigs",
    "module_name_regex_qconfigs",
    "module_name_qconfigs",
    "module_name_object_type_order_qconfigs",
]


def _parent_name(target: str) -> tuple[str, str]:
    """``"a.b.c"`` -> ``("a.b", "c")``; ``"c"`` -> ``("", "c")`` (torch's _parent_name)."""
    parent, _, name = target.rpartition(".")
    return parent, name


def _check_object_type(object_type: Any, argument: str = "object_type") -> None:
    if isinstance(object_type, str):
        return
    if not callable(object_type):
        raise TypeError(f"{argument}={object_type!r} must be a module type, a function or a "
                        "method name string")
    try:
        hash(object_type)
    except TypeError:
        raise TypeError(f"{argument}={object_type!r} must be hashable") from None


def _check_name(name: Any, argument: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{argument}={name!r} must be a str")


class QConfigMapping:
    """Mapping from model ops to QConfigs (torch's class, same setters and precedence).

    Setters, in increasing match priority: :meth:`set_global`, :meth:`set_object_type`,
    :meth:`set_module_name_regex`, :meth:`set_module_name`,
    :meth:`set_module_name_object_type_order`. Each returns ``self`` for chaining; setting a
    key again overrides its QConfig (regexes keep their original registration order). A
    QConfig may be None, meaning "do not quantize".
    """

    def __init__(self) -> None:
        self.global_qconfig: Any = None
        self.object_type_qconfigs: OrderedDict[Callable | str, Any] = OrderedDict()
        self.module_name_regex_qconfigs: OrderedDict[str, Any] = OrderedDict()
        self.module_name_qconfigs: OrderedDict[str, Any] = OrderedDict()
        self.module_name_object_type_order_qconfigs: OrderedDict[
            tuple[str, Callable | str, int], Any] = OrderedDict()

    # --- setters ----------------------------------------------------------------------------

    def set_global(self, global_qconfig: Any) -> QConfigMapping:
        """Sets the global (default) QConfig."""
        self.global_qconfig = global_qconfig
        return self

    def set_object_type(self, object_type: Callable | str, qconfig: Any) -> QConfigMapping:
        """Sets the QConfig for a module type, function, or method name."""
        _check_object_type(object_type)
        self.object_type_qconfigs[object_type] = qconfig
        return self

    def set_module_name_regex(self, module_name_regex: str, qconfig: Any) -> QConfigMapping:
        """Sets the QConfig for modules whose name matches ``module_name_regex`` (re.match).

        Regexes are tried in registration order; register specific ones first.
        """
        _check_name(module_name_regex, "module_name_regex")
        try:
            re.compile(module_name_regex)
        except re.error as error:
            raise ValueError(f"module_name_regex={module_name_regex!r} is not a valid regular "
                             f"expression: {error}") from None
        self.module_name_regex_qconfigs[module_name_regex] = qconfig
        return self

    def set_module_name(self, module_name: str, qconfig: Any) -> QConfigMapping:
        """Sets the QConfig for the module called ``module_name`` (and its submodules)."""
        _check_name(module_name, "module_name")
        self.module_name_qconfigs[module_name] = qconfig
        return self

    def set_module_name_object_type_order(self, module_name: str, object_type: Callable | str,
                                          index: int, qconfig: Any) -> QConfigMapping:
        """Sets the QConfig for the ``index``-th call of ``object_type`` inside ``module_name``."""
        _check_name(module_name, "module_name")
        _check_object_type(object_type)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise TypeError(f"index={index!r} must be a non-negative int")
        self.module_name_object_type_order_qconfigs[(module_name, object_type, index)] = qconfig
        return self

    # --- resolvers (torch's fx/qconfig_mapping_utils helpers, made public) -------------------

    def object_type_qconfig(self, object_type: Any, fallback_qconfig: Any) -> Any:
        """The QConfig set for ``object_type``, else ``fallback_qconfig``."""
        return self.object_type_qconfigs.get(object_type, fallback_qconfig)

    def module_name_regex_qconfig(self, module_name: str, fallback_qconfig: Any) -> Any:
        """The QConfig of the first registered regex that ``re.match``-es ``module_name``."""
        for regex_pattern, qconfig in self.module_name_regex_qconfigs.items():
            if re.match(regex_pattern, module_name):
                return qconfig
        return fallback_qconfig

    def module_name_qconfig(self, module_name: str, fallback_qconfig: Any) -> Any:
        """The QConfig set for ``module_name`` or its nearest named parent, else fallback."""
        while module_name != "":
            if module_name in self.module_name_qconfigs:
                return self.module_name_qconfigs[module_name]
            module_name, _ = _parent_name(module_name)
        return fallback_qconfig

    def module_type_or_name_qconfig(self, module_type: Any, module_name: str,
                                    fallback_qconfig: Any) -> Any:
        """object_type, then regex, then module name (torch's
        ``_maybe_adjust_qconfig_for_module_type_or_name``), starting from ``fallback_qconfig``."""
        qconfig = self.object_type_qconfig(module_type, fallback_qconfig)
        qconfig = self.module_name_regex_qconfig(module_name, qconfig)
        return self.module_name_qconfig(module_name, qconfig)

    def module_name_object_type_order_qconfig(self, module_path: str, object_type: Any,
                                              index: int, fallback_qconfig: Any) -> Any:
        """The QConfig set for the ``index``-th ``object_type`` call in ``module_path``."""
        for (name, type_, order), qconfig in self.module_name_object_type_order_qconfigs.items():
            if name == module_path and type_ == object_type and order == index:
                return qconfig
        return fallback_qconfig

    def qconfig_for_module(self, module_name: str, module_type: Any,
                           index: int | None = None) -> Any:
        """The QConfig of a called module (torch FX ``call_module``; eager leaf modules).

        Args:
          module_name: dotted path of the module in the model (``"block.fc1"``).
          module_type: its type (``nnx.Linear``).
          index: how many modules of ``module_type`` were called before this one in the same
            parent module, or None to skip the ``module_name_object_type_order`` lookup
            (eager mode has no call order).

        Returns:
          The QConfig (None means "do not quantize").
        """
        _check_name(module_name, "module_name")
        qconfig = self.module_type_or_name_qconfig(module_type, module_name,
                                                   self.global_qconfig)
        if index is not None:
            parent, _ = _parent_name(module_name)
            qconfig = self.module_name_object_type_order_qconfig(parent, module_type, index,
                                                                 qconfig)
        return qconfig

    def qconfig_for_function(self, function: Any, scope_name: str, scope_type: Any,
                             index: int | None = None) -> Any:
        """The QConfig of a function call (torch FX ``call_function``).

        The enclosing module's type and name take precedence over the function's own
        object-type entry, as in torch.

        Args:
          function: the called function (``jax.nn.relu``, ``operator.add``).
          scope_name: dotted path of the module whose ``__call__`` made the call ("" = root).
          scope_type: that module's type.
          index: how many calls of ``function`` came before this one in the same scope, or
            None to skip the ``module_name_object_type_order`` lookup.
        """
        _check_name(scope_name, "scope_name")
        qconfig = self.object_type_qconfig(function, self.global_qconfig)
        qconfig = self.module_type_or_name_qconfig(scope_type, scope_name, qconfig)
        if index is not None:
            qconfig = self.module_name_object_type_order_qconfig(scope_name, function, index,
                                                                 qconfig)
        return qconfig

    def qconfig_for_method(self, method_name: str, scope_name: str, scope_type: Any) -> Any:
        """The QConfig of a jax.Array method call (torch FX ``call_method``), e.g. reshape.

        The method's own entry is looked up first, then the enclosing module's type and name
        override it; torch does not support call order for methods.
        """
        _check_name(method_name, "method_name")
        _check_name(scope_name, "scope_name")
        qconfig = self.module_type_or_name_qconfig(method_name, scope_name, self.global_qconfig)
        return self.module_type_or_name_qconfig(scope_type, scope_name, qconfig)

    def flattened(self) -> dict[Any, Any]:
        """torch's ``_get_flattened_qconfig_dict`` for eager mode's propagate_qconfig_.

        ``{"": global, <object_type>: qconfig, ..., <module_name>: qconfig, ...}``; regexes
        and call-order entries are not part of it (as in torch).
        """
        flattened: dict[Any, Any] = {"": self.global_qconfig}
        flattened.update(self.object_type_qconfigs)
        flattened.update(self.module_name_qconfigs)
        return flattened

    # --- dict form ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        output = self.__class__.__name__ + " ("
        for style_name in _QCONFIG_STYLE_ORDER:
            output += f"\n {style_name}"
            qconfigs = getattr(self, style_name)
            if isinstance(qconfigs, OrderedDict) and len(qconfigs) > 0:
                for key, qconfig in qconfigs.items():
                    output += f"\n  {key}: {qconfig}"
            else:
                output += f"\n  {qconfigs}"
        return output + "\n)"

    def to_dict(self) -> dict[str, Any]:
        """torch's dict form: keys ``""``, ``"object_type"``, ``"module_name_regex"``,
        ``"module_name"``, ``"module_name_object_type_order"``; values are lists of tuples."""
        return {
            _GLOBAL_DICT_KEY: self.global_qconfig,
            _OBJECT_TYPE_DICT_KEY: list(self.object_type_qconfigs.items()),
            _MODULE_NAME_REGEX_DICT_KEY: list(self.module_name_regex_qconfigs.items()),
            _MODULE_NAME_DICT_KEY: list(self.module_name_qconfigs.items()),
            _MODULE_NAME_OBJECT_TYPE_ORDER_DICT_KEY: [
                (*key, value) for key, value in self.module_name_object_type_order_qconfigs.items()
            ],
        }

    @classmethod
    def from_dict(cls, qconfig_dict: dict[str, Any]) -> QConfigMapping:
        """Builds a mapping from torch's dict form (all keys optional).

        Raises:
          ValueError: naming an unknown key, or an entry with the wrong number of elements.
        """
        if not isinstance(qconfig_dict, dict):
            raise TypeError(f"qconfig_dict={qconfig_dict!r} must be a dict")
        unknown = [key for key in qconfig_dict if key not in _DICT_KEYS]
        if unknown:
            raise ValueError(f"qconfig_dict has unknown keys {unknown}; accepted: "
                             f"{list(_DICT_KEYS)}")
        conf = cls()
        if _GLOBAL_DICT_KEY in qconfig_dict:
            conf.set_global(qconfig_dict[_GLOBAL_DICT_KEY])
        setters = [
            (_OBJECT_TYPE_DICT_KEY, 2, conf.set_object_type),
            (_MODULE_NAME_REGEX_DICT_KEY, 2, conf.set_module_name_regex),
            (_MODULE_NAME_DICT_KEY, 2, conf.set_module_name),
            (_MODULE_NAME_OBJECT_TYPE_ORDER_DICT_KEY, 4, conf.set_module_name_object_type_order),
        ]
        for key, arity, setter in setters:
            for entry in qconfig_dict.get(key, []):
                if not isinstance(entry, (tuple, list)) or len(entry) != arity:
                    raise ValueError(f"qconfig_dict[{key!r}] entries must be {arity}-tuples, "
                                     f"got {entry!r}")
                setter(*entry)
        return conf


# --- default mappings ---------------------------------------------------------------------

_SUPPORTED_BACKENDS = ("fbgemm", "x86", "qnnpack", "onednn")


def _fixed_qparams_op_to_observer() -> dict[Any, Any]:
    """torch's ``_FIXED_QPARAMS_OP_TO_OBSERVER`` with jaxq object types.

    torch lists nn.Hardsigmoid, F.hardsigmoid, "hardsigmoid", "hardsigmoid_" (0..1),
    nn.Sigmoid, torch.sigmoid, "sigmoid", "sigmoid_" (0..1), nn.Softmax (0..1) and nn.Tanh,
    torch.tanh, "tanh", "tanh_" (-1..1); each translates through the type table (module,
    functional and method forms land on one JAX function).
    """
    from jaxq import observer
    from jaxq.backend_config._common import FIXED_QPARAMS_OP_TO_CONSTRAINTS_TORCH_NAMES
    from jaxq.backend_config.type_names import to_jaxq

    result: dict[Any, Any] = {}
    for torch_name, constraints in FIXED_QPARAMS_OP_TO_CONSTRAINTS_TORCH_NAMES.items():
        op = to_jaxq(torch_name, missing="none")
        if op is None:
            continue
        if constraints.zero_point_exact_match == 0:
            result[op] = observer.default_fixed_qparams_range_0to1_observer
        else:
            result[op] = observer.default_fixed_qparams_range_neg1to1_observer
    return result


def _get_default_qconfig_mapping(is_qat: bool, backend: str, version: int) -> QConfigMapping:
    from flax import nnx

    from jaxq import fake_quantize, observer, qconfig as qconfig_module
    from jaxq.backend_config.type_names import to_jaxq

    if is_qat:
        qconfig = qconfig_module.get_default_qat_qconfig(backend, version)
    else:
        qconfig = qconfig_module.get_default_qconfig(backend, version)
    default_weight = (fake_quantize.default_weight_fake_quant if is_qat
                      else observer.default_weight_observer)
    QConfig = qconfig_module.QConfig

    # Per-channel weight observers are not supported for transposed conv on fbgemm/x86.
    if backend in ("fbgemm", "x86"):
        qconfig_transpose = QConfig(activation=qconfig.activation, weight=default_weight)
    else:
        qconfig_transpose = qconfig
    # LayerNorm keeps float weights.
    qconfig_layernorm = QConfig(activation=qconfig.activation,
                                weight=observer.default_placeholder_observer)

    # torch sets ConvTranspose1d/2d/3d, F.conv_transpose1d/2d/3d, F.layer_norm, LayerNorm
    # and PReLU; in jaxq these are nnx.ConvTranspose, lax.conv_transpose, nnx.LayerNorm and
    # nnx.PReLU (F.layer_norm has no JAX functional form).
    mapping = (
        QConfigMapping()
        .set_global(qconfig)
        .set_object_type(to_jaxq("reshape"), qconfig_module.default_reuse_input_qconfig)
        .set_object_type(nnx.ConvTranspose, qconfig_transpose)
        .set_object_type(to_jaxq("torch.nn.functional.conv_transpose2d"), qconfig_transpose)
        .set_object_type(nnx.LayerNorm, qconfig_layernorm)
        .set_object_type(nnx.PReLU, qconfig_module.default_quint8_weight_qconfig)
    )
    fixed_qparams_observer_to_qconfig: dict[int, Any] = {}
    for op, fixed_observer in _fixed_qparams_op_to_observer().items():
        key = id(fixed_observer)
        if key not in fixed_qparams_observer_to_qconfig:
            activation = (fake_quantize.FixedQParamsFakeQuantize.with_args(observer=fixed_observer)
                          if is_qat else fixed_observer)
            fixed_qparams_observer_to_qconfig[key] = QConfig(activation=activation,
                                                             weight=default_weight)
        mapping.set_object_type(op, fixed_qparams_observer_to_qconfig[key])
    return mapping


def _check_backend(backend: Any) -> None:
    if backend not in _SUPPORTED_BACKENDS:
        raise ValueError(f"backend={backend!r} not supported; accepted: "
                         f"{list(_SUPPORTED_BACKENDS)}")


def get_default_qconfig_mapping(backend: str = "x86", version: int = 0) -> QConfigMapping:
    """The default QConfigMapping for post-training quantization (torch's choices).

    Global: ``get_default_qconfig(backend, version)``; ``"reshape"`` reuses its input's
    observer; transposed conv gets per-tensor weights on fbgemm/x86; LayerNorm keeps float
    weights; PReLU gets quint8 weights; sigmoid / hard_sigmoid / softmax / tanh get
    fixed-qparams observers.

    Args:
      backend: one of ``"x86"`` (default), ``"fbgemm"``, ``"qnnpack"``, ``"onednn"``.
      version: 0 (the only version torch has).

    Raises:
      ValueError: naming ``backend`` or ``version`` and the accepted values.
    """
    _check_backend(backend)
    return _get_default_qconfig_mapping(False, backend, version)


def get_default_qat_qconfig_mapping(backend: str = "x86", version: int = 1) -> QConfigMapping:
    """The default QConfigMapping for quantization-aware training (torch's choices).

    As :func:`get_default_qconfig_mapping`, with fake-quantize constructors, and
    ``FixedQParamsFakeQuantize`` for the fixed-qparams ops.

    Args:
      backend: one of ``"x86"`` (default), ``"fbgemm"``, ``"qnnpack"``, ``"onednn"``.
      version: 0 (FakeQuantize) or 1 (FusedMovingAvgObsFakeQuantize, default).
    """
    _check_backend(backend)
    return _get_default_qconfig_mapping(True, backend, version)


def _get_default_qconfig_mapping_with_default_qconfig(is_qat: bool, backend: str,
                                                      default_qconfig: Any) -> QConfigMapping:
    """The default mapping with ``default_qconfig`` everywhere except fixed-qparams ops."""
    if is_qat:
        mapping = get_default_qat_qconfig_mapping(backend)
    else:
        mapping = get_default_qconfig_mapping(backend)
    mapping.set_global(default_qconfig)
    fixed = _fixed_qparams_op_to_observer()
    for pattern in list(mapping.object_type_qconfigs):
        if pattern not in fixed:
            mapping.set_object_type(pattern, default_qconfig)
    return mapping


def _get_symmetric_qnnpack_qconfig_mapping() -> QConfigMapping:
    from jaxq.qconfig import default_symmetric_qnnpack_qconfig
    return _get_default_qconfig_mapping_with_default_qconfig(
        False, "qnnpack", default_symmetric_qnnpack_qconfig)


def _get_symmetric_qnnpack_qat_qconfig_mapping() -> QConfigMapping:
    from jaxq.qconfig import default_symmetric_qnnpack_qat_qconfig
    return _get_default_qconfig_mapping_with_default_qconfig(
        True, "qnnpack", default_symmetric_qnnpack_qat_qconfig)

