"""``propagate_qconfig_`` and qconfig resolution (torch's precedence).

Split out of :mod:`jaxq.eager.quantize`; see its docs for the NNX mapping.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxq.eager._common import _apply
from jaxq.eager._tree import check_module, named_children
from jaxq.eager.hooks import type_before_observation

__all__ = ["propagate_qconfig_"]

_FX_STYLE_KEYS = ("object_type", "module_name_regex", "module_name",
                  "module_name_object_type_order")


def _check_qconfig_value(value: Any, where: str) -> None:
    if value is None:
        return
    if not (hasattr(value, "activation") and hasattr(value, "weight")):
        raise TypeError(f"{where}: {value!r} is not a QConfig (or None)")


def _normalize_qconfig_dict(qconfig_dict: Any) -> dict[Any, Any]:
    from jaxq.qconfig_mapping import QConfigMapping
    if qconfig_dict is None:
        return {}
    if isinstance(qconfig_dict, QConfigMapping):
        return qconfig_dict.flattened()
    if not isinstance(qconfig_dict, dict):
        raise TypeError("qconfig_dict must be a dict {name or module type: QConfig}, a "
                        f"QConfigMapping or None; got {type(qconfig_dict).__name__}")
    if any(key in _FX_STYLE_KEYS and isinstance(value, list)
           for key, value in qconfig_dict.items()):
        return QConfigMapping.from_dict(qconfig_dict).flattened()
    for key, value in qconfig_dict.items():
        if not (isinstance(key, (str, type)) or callable(key)):
            raise TypeError(f"qconfig_dict key {key!r} must be a module name (str) or a "
                            "module type")
        _check_qconfig_value(value, f"qconfig_dict[{key!r}]")
    return qconfig_dict


def _propagate_qconfig_helper(module: nnx.Module, qconfig_dict: dict, qconfig_parent: Any,
                              prefix: str, prepare_custom_config_dict: dict | None) -> None:
    from jaxq.qconfig import _assert_valid_qconfig
    module_qconfig = qconfig_dict.get(type_before_observation(module), qconfig_parent)
    module_qconfig = qconfig_dict.get(prefix, module_qconfig)
    module_qconfig = getattr(module, "qconfig", module_qconfig)
    _check_qconfig_value(module_qconfig, f"the qconfig of {prefix or 'the model'!r}")
    _assert_valid_qconfig(module_qconfig, module)
    module.qconfig = module_qconfig
    custom = prepare_custom_config_dict or {}
    skip_names = custom.get("non_traceable_module_name", [])
    skip_classes = custom.get("non_traceable_module_class", [])
    for name, child in list(named_children(module)):
        module_prefix = f"{prefix}.{name}" if prefix else name
        if name in skip_names or type_before_observation(child) in skip_classes:
            continue
        _propagate_qconfig_helper(child, qconfig_dict, module_qconfig, module_prefix,
                                  prepare_custom_config_dict)


def _propagate(module: nnx.Module, qconfig_dict: Any = None,
               prepare_custom_config_dict: dict | None = None) -> None:
    _propagate_qconfig_helper(module, _normalize_qconfig_dict(qconfig_dict), None, "",
                              prepare_custom_config_dict)


def propagate_qconfig_(module: nnx.Module, qconfig_dict: Any = None,
                       prepare_custom_config_dict: dict | None = None) -> None:
    """Assigns ``qconfig`` to every submodule (in place), with torch's precedence.

    For each module: its own ``qconfig`` attribute wins, then ``qconfig_dict[name]``
    (dotted attribute path), then ``qconfig_dict[type]`` (the class, looking through
    ``Observed<Cls>``), then the parent's qconfig.

    Args:
      module: the model.
      qconfig_dict: ``{name or type: QConfig or None}``, a
        :class:`~jaxq.qconfig_mapping.QConfigMapping` (its global, object-type and
        module-name entries, as torch's eager mode reads them), or None.
      prepare_custom_config_dict: ``non_traceable_module_name`` /
        ``non_traceable_module_class`` entries are not descended into (torch checks only
        the root's direct children; jaxq checks every level).

    Raises:
      TypeError: malformed ``qconfig_dict`` or a qconfig that is not a QConfig.
      ValueError: a per-channel weight observer on ``nnx.ConvTranspose``. The module is
        unchanged on error.

    Example:
      >>> from flax import nnx
      >>> from jaxq.qconfig import default_qconfig
      >>> seq = nnx.Sequential(nnx.Linear(2, 2, rngs=nnx.Rngs(0)),
      ...                      nnx.Linear(2, 2, rngs=nnx.Rngs(1)))
      >>> propagate_qconfig_(seq, {nnx.Linear: default_qconfig, "layers.1": None})
      >>> seq.layers[0].qconfig is default_qconfig, seq.layers[1].qconfig
      (True, None)
    """
    check_module(module, "module")
    _apply(module, True,
           lambda m: _propagate(m, qconfig_dict, prepare_custom_config_dict))
