"""``from_torch`` / ``to_torch``: one entry point per direction for configuration objects.

Example:
  >>> import torch.ao.quantization as tq
  >>> import jaxq.interop as interop
  >>> qconfig = interop.from_torch(tq.get_default_qconfig("x86"))
  >>> observer = qconfig.activation()
  >>> type(observer).__name__, observer.reduce_range
  ('HistogramObserver', True)
  >>> interop.to_torch(qconfig).weight().qscheme
  torch.per_channel_symmetric
"""

from __future__ import annotations

import functools
from typing import Any

from jaxq.interop import configs, mapping, specs
from jaxq.interop._common import is_torch_object

__all__ = ["from_torch", "to_torch"]

_CUSTOM = ("PrepareCustomConfig", "ConvertCustomConfig", "FuseCustomConfig")
_ACCEPTED = ("QConfig / QConfigDynamic, QConfigMapping (or its dict form), BackendConfig, "
             "Prepare/Convert/FuseCustomConfig, an observer or fake-quantize class or "
             "with_args / functools.partial constructor, a quantized dtype or qscheme")


def _is_constructor(obj: Any) -> bool:
    return isinstance(obj, (type, functools.partial)) or specs._is_partial_wrapper(obj)


def from_torch(obj: Any, *, strict: bool = False, type_map: dict | None = None) -> Any:
    """The jaxq equivalent of a live torch quantization configuration object.

    Args:
      obj: a torch ``QConfig`` (or ``QConfigDynamic``), ``QConfigMapping`` (or the dict
        form of ``QConfigMapping.to_dict()``), ``BackendConfig``,
        ``PrepareCustomConfig`` / ``ConvertCustomConfig`` / ``FuseCustomConfig``, an observer
        or fake-quantize class or constructor (``Cls.with_args(...)``, nested chains,
        ``with_callable_args``, ``functools.partial``), a torch dtype or qscheme.
      strict: raise instead of warning when an entry names a torch op that JAX has no
        counterpart for (see :class:`~jaxq.interop.TranslationWarning`).
      type_map: ``{torch object: jaxq object}`` for your own module classes in
        QConfigMapping object types and custom configs.

    Returns:
      The jaxq object: QConfig, QConfigMapping, BackendConfig, custom config, constructor,
      QuantDType or QScheme. Constructors are built once to validate them.

    Raises:
      TypeError: ``obj`` is none of the accepted kinds (or an observer instance).
      ValueError: naming the entry jaxq cannot represent (unknown class, unsupported
        dtype/qscheme combination, torch entries that collapse onto one jaxq object with
        different settings, ...).

    Example:
      >>> import torch.ao.quantization as tq
      >>> mapping = from_torch(tq.get_default_qconfig_mapping("qnnpack"))
      >>> type(mapping.global_qconfig.weight()).__name__
      'MinMaxObserver'
    """
    if obj is None:
        return None
    name = type(obj).__name__
    if isinstance(obj, dict):
        import torch.ao.quantization as tq
        obj, name = tq.QConfigMapping.from_dict(obj), "QConfigMapping"
    if not is_torch_object(obj):
        raise TypeError(f"from_torch expects a torch object; got {type(obj).__module__}."
                        f"{name} (accepted: {_ACCEPTED})")
    if name == "QConfigMapping":
        return mapping.mapping_from_spec(mapping.torch_mapping_spec(obj, type_map), strict)
    if name in ("QConfig", "QConfigDynamic"):
        return specs.qconfig_from_spec(specs.torch_qconfig_spec(obj))
    if name == "BackendConfig":
        return configs.backend_config_from_torch(obj, strict)
    if name in _CUSTOM:
        return configs.custom_config_from_torch(obj, strict, type_map)
    if name == "dtype":
        from jaxq.core.dtypes import as_quant_dtype
        return as_quant_dtype(obj)
    if name == "qscheme":
        from jaxq.core.qscheme import as_qscheme
        return as_qscheme(obj)
    if _is_constructor(obj) or hasattr(obj, "calculate_qparams"):
        return specs.constructor_from_spec(specs.torch_constructor_spec(obj))
    raise TypeError(f"from_torch cannot convert {type(obj).__module__}.{name}; accepted: "
                    f"{_ACCEPTED}")


def to_torch(obj: Any, *, type_map: dict | None = None) -> Any:
    """The torch equivalent of a jaxq configuration object (needs torch).

    Accepts what :func:`from_torch` returns except BackendConfig (jaxq's hold Flax patterns
    and rank-collapsed ``ByRank`` fields; build torch's with torch). A jaxq object standing
    for several torch names (``nnx.Conv``, ``jax.nn.relu``) becomes one entry per torch name
    in a QConfigMapping; activation ``ch_axis`` goes back to channels-first.

    Raises:
      TypeError: for anything else, naming its type.
      ValueError: naming the entry that has no torch equivalent.

    Example:
      >>> import jaxq
      >>> torch_mapping = to_torch(jaxq.qconfig_mapping.get_default_qconfig_mapping("x86"))
      >>> type(torch_mapping).__module__
      'torch.ao.quantization.qconfig_mapping'
    """
    from jaxq.backend_config import BackendConfig
    from jaxq.core.dtypes import QuantDType
    from jaxq.core.qscheme import QScheme
    from jaxq.qconfig_mapping import QConfigMapping

    if obj is None:
        return None
    if isinstance(obj, QConfigMapping):
        return mapping.torch_mapping_from_spec(mapping.jaxq_mapping_spec(obj))
    if specs._is_qconfig(obj):
        return specs.torch_qconfig_from_spec(specs.jaxq_qconfig_spec(obj))
    if type(obj).__name__ in _CUSTOM and type(obj).__module__.startswith("jaxq"):
        return configs.custom_config_to_torch(obj, type_map)
    if isinstance(obj, (QuantDType, QScheme)):
        import torch
        short = obj.name if isinstance(obj, QuantDType) else obj.value
        if not hasattr(torch, short):
            raise ValueError(f"{obj!r} has no torch equivalent (torch.{short} is missing)")
        return getattr(torch, short)
    if isinstance(obj, BackendConfig):
        raise TypeError("to_torch does not convert a BackendConfig: jaxq's hold Flax "
                        "patterns and rank-collapsed fields; use torch's "
                        "get_native_backend_config / get_x86_backend_config")
    if _is_constructor(obj):
        return specs.torch_constructor_from_spec(specs.jaxq_constructor_spec(obj))
    raise TypeError(f"to_torch cannot convert {type(obj).__module__}.{type(obj).__name__}; "
                    f"accepted: {_ACCEPTED} (jaxq objects)")
