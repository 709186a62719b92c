"""Observer / fake-quantize constructors and QConfigs as plain, torch-named specs.

Every conversion of :mod:`jaxq.interop` goes through one neutral form that mirrors what
torch's ``QConfigMapping.to_dict()`` holds, written with names instead of objects:

* a constructor (``MinMaxObserver``, ``FakeQuantize.with_args(observer=..., ...)``) is
  ``{"class": "torch.ao.quantization.observer.MinMaxObserver", "kwargs": {...}}`` (``kwargs``
  left out when empty), ``None`` for no constructor;
* keyword values are JSON values; dtypes and qschemes are torch's names (``"torch.quint8"``,
  ``"torch.per_channel_symmetric"``); a nested constructor (FakeQuantize's ``observer``) is
  a nested spec;
* a QConfig is ``{"activation": <spec>, "weight": <spec>}``, ``None`` for "not quantized".

Specs always carry **torch's semantics**. Two things differ in jaxq and are translated here,
in one place, when a spec becomes a jaxq QConfig (and back):

* Weight observers keep torch's ``ch_axis`` (``0`` = output channel of torch's
  ``(out, in, *k)`` weight); jaxq QConfigs use the same convention, and
  :func:`jaxq.nn.layout.flax_kernel_axis` moves it onto the Flax kernel (``(*k, in, out)``:
  torch 0 -> Flax last axis) when the observer is built for a kernel.
* Activation observers: torch activations are channels-first ``(N, C, ...)``, jaxq's are
  channels-last ``(N, ..., C)``. A per-channel activation ``ch_axis`` of 1 becomes -1 (and
  back); 0 (the batch axis) stays; any other value raises, naming the entry.

``with_args`` chains flatten into one keyword dict (later keywords win, exactly as calling
the chain does); ``with_callable_args`` entries stay callables (a live conversion keeps
them, evaluated at each construction with their result translated; a file cannot hold them
and saving raises, naming the entry).
"""

from __future__ import annotations

import functools
from typing import Any

from jaxq.backend_config import type_names
from jaxq.core.dtypes import _BY_NAME as _DTYPES_BY_NAME
from jaxq.core.dtypes import QuantDType
from jaxq.core.qscheme import QScheme
from jaxq.interop._common import (
    require_torch,
    resolve_type_name,
    torch_type_name_of,
    type_name_of_jaxq,
)

__all__ = ["torch_constructor_spec", "jaxq_constructor_spec", "constructor_from_spec",
           "torch_constructor_from_spec", "torch_qconfig_spec", "jaxq_qconfig_spec",
           "qconfig_from_spec", "torch_qconfig_from_spec", "CallableArg", "IDENTITY_NAME"]

IDENTITY_NAME = "torch.nn.Identity"
_SPEC_KEYS = {"class", "kwargs", "callable_args"}
_QSCHEMES = {q.value: q for q in QScheme}


class CallableArg:
    """A ``with_callable_args`` callable kept in a spec, with the side whose values it
    returns (``"torch"`` or ``"jaxq"``)."""

    def __init__(self, function: Any, side: str):
        self.function = function
        self.side = side

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, CallableArg) and other.function is self.function
                and other.side == self.side)

    def __hash__(self) -> int:
        return hash((id(self.function), self.side))

    def __repr__(self) -> str:
        return f"CallableArg({self.function!r}, side={self.side!r})"


# --- flattening constructors (torch's and jaxq's _PartialWrapper behave alike) -----------

def _is_partial_wrapper(obj: Any) -> bool:
    return isinstance(getattr(obj, "p", None), functools.partial) and hasattr(
        obj, "callable_args")


def _flatten(ctor: Any, where: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``(class, static keywords, callable keywords)`` equivalent to calling ``ctor``.

    A wrapper's callable args are evaluated at call time and override the static keywords
    bound inside it; static keywords bound by an outer ``with_args`` override an inner
    callable arg (torch's ``_PartialWrapper.__call__``).
    """
    if isinstance(ctor, type):
        return ctor, {}, {}
    if isinstance(ctor, functools.partial):
        if ctor.args:
            raise ValueError(f"{where}: {ctor!r} binds positional arguments; observer "
                             "constructors take keywords only")
        cls, static, callables = _flatten(ctor.func, where)
        for key, value in ctor.keywords.items():
            static[key] = value
            callables.pop(key, None)
        return cls, static, callables
    if _is_partial_wrapper(ctor):
        cls, static, callables = _flatten(ctor.p, where)
        for key, function in ctor.callable_args.items():
            callables[key] = function
            static.pop(key, None)
        return cls, static, callables
    if hasattr(ctor, "calculate_qparams") or hasattr(ctor, "forward"):
        raise TypeError(f"{where}: got an instance of {type(ctor).__name__}; QConfigs hold "
                        "constructors: pass the class or Class.with_args(...) (observer "
                        "statistics load with jaxq.interop.load_torch_observer_state_dict)")
    raise TypeError(f"{where}: {ctor!r} is not an observer / fake-quantize constructor "
                    "(a class, Class.with_args(...) or a functools.partial)")


def _is_constructor(value: Any) -> bool:
    return isinstance(value, (type, functools.partial)) or _is_partial_wrapper(value)


# --- torch -> spec ---------------------------------------------------------------------

def _torch_value_to_spec(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    kind = type(value)
    if kind.__module__ == "torch" and kind.__name__ in ("dtype", "qscheme"):
        return str(value)
    if kind.__module__ == "torch" and kind.__name__ == "device":
        return str(value)
    if _is_constructor(value):
        return torch_constructor_spec(value, where)
    if isinstance(value, dict):
        return {str(k): _torch_value_to_spec(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_torch_value_to_spec(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind.__name__ == "TorchAODType":
        return f"torch.{value.name.lower()}"
    raise TypeError(f"{where}={value!r} ({kind.__module__}.{kind.__name__}) has no jaxq "
                    "equivalent; accepted: numbers, strings, torch dtypes and qschemes, "
                    "nested observer constructors, dicts and lists of those")


def _torch_class_name(cls: Any, where: str) -> str:
    if getattr(cls, "__name__", None) == "Identity" and getattr(cls, "__module__", "").startswith(
            "torch.nn"):
        return IDENTITY_NAME
    return torch_type_name_of(cls, where)


def torch_constructor_spec(ctor: Any, where: str = "constructor") -> dict[str, Any] | None:
    """The spec of a live torch observer / fake-quantize constructor.

    Raises:
      TypeError / ValueError: naming ``where`` for an instance, an unknown class or a
        keyword value jaxq cannot represent.
    """
    if ctor is None:
        return None
    cls, static, callables = _flatten(ctor, where)
    spec: dict[str, Any] = {"class": _torch_class_name(cls, where)}
    if static:
        spec["kwargs"] = {k: _torch_value_to_spec(v, f"{where}.{k}") for k, v in static.items()}
    if callables:
        spec["callable_args"] = {k: CallableArg(f, "torch") for k, f in callables.items()}
    return spec


# --- jaxq -> spec ----------------------------------------------------------------------

def _jaxq_value_to_spec(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, QuantDType):
        return value.torch_name
    if isinstance(value, QScheme):
        return value.torch_name
    if _is_constructor(value):
        return jaxq_constructor_spec(value, where)
    if isinstance(value, dict):
        return {str(k): _jaxq_value_to_spec(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jaxq_value_to_spec(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "dtype") and hasattr(value, "shape") and getattr(value, "ndim", 1) == 0:
        return value.item()
    raise TypeError(f"{where}={value!r} ({type(value).__name__}) cannot be written in "
                    "torch's terms; accepted: numbers, strings, jaxq dtypes and qschemes, "
                    "nested observer constructors, dicts and lists of those")


def _jaxq_class_name(cls: Any, where: str) -> str:
    from jaxq.qconfig import Identity
    if isinstance(cls, type) and issubclass(cls, Identity):
        return IDENTITY_NAME
    names = type_names.torch_names_for(cls)
    if names:
        return names[0]
    return type_name_of_jaxq(cls, where)


def jaxq_constructor_spec(ctor: Any, where: str = "constructor") -> dict[str, Any] | None:
    """The (torch-named) spec of a jaxq observer / fake-quantize constructor."""
    if ctor is None:
        return None
    cls, static, callables = _flatten(ctor, where)
    spec: dict[str, Any] = {"class": _jaxq_class_name(cls, where)}
    if static:
        spec["kwargs"] = {k: _jaxq_value_to_spec(v, f"{where}.{k}") for k, v in static.items()}
    if callables:
        spec["callable_args"] = {k: CallableArg(f, "jaxq") for k, f in callables.items()}
    return spec


# --- spec -> jaxq ----------------------------------------------------------------------

def _check_spec(spec: Any, where: str) -> None:
    if not isinstance(spec, dict) or "class" not in spec:
        raise ValueError(f"{where}: a constructor must be null or an object with a \"class\" "
                         f"entry (and optional \"kwargs\"); got {spec!r}")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown constructor entries {unknown}; accepted: "
                         "class, kwargs")
    if not isinstance(spec.get("kwargs", {}), dict):
        raise ValueError(f"{where}.kwargs must be an object of keyword arguments; got "
                         f"{spec['kwargs']!r}")


def _lookup_class_name(name: Any, where: str) -> str:
    """A bare class name (``"HistogramObserver"``) -> its table key."""
    if not isinstance(name, str):
        raise ValueError(f"{where}.class must be a string; got {name!r}")
    if name in type_names.TORCH_TO_JAXQ or "." in name or name == "Identity":
        return IDENTITY_NAME if name == "Identity" else name
    matches = [key for key in type_names.TORCH_TO_JAXQ
               if key.startswith(("torch.ao.quantization.observer.",
                                  "torch.ao.quantization.fake_quantize.",
                                  "torch.ao.quantization._learnable_fake_quantize."))
               and key.rsplit(".", 1)[1] == name]
    if not matches:
        raise ValueError(f"{where}: unknown observer class {name!r}; accepted: "
                         f"{sorted(_known_constructor_names())}")
    return matches[0]


def _known_constructor_names() -> list[str]:
    return [key.rsplit(".", 1)[1] for key in type_names.TORCH_TO_JAXQ
            if key.startswith(("torch.ao.quantization.observer.",
                               "torch.ao.quantization.fake_quantize.",
                               "torch.ao.quantization._learnable_fake_quantize."))]


def _jaxq_class(name: Any, where: str) -> Any:
    name = _lookup_class_name(name, where)
    if name == IDENTITY_NAME:
        from jaxq.qconfig import Identity
        return Identity
    try:
        cls = resolve_type_name(name, where)
    except (LookupError, ValueError) as error:
        raise ValueError(f"unknown observer class: {error}") from None
    if not isinstance(cls, type):
        raise ValueError(f"{where}: class {name!r} is not a class ({cls!r})")
    return cls


def _spec_value_to_jaxq(value: Any, where: str) -> Any:
    if isinstance(value, str) and value.startswith("torch."):
        short = value[len("torch."):]
        if short in _DTYPES_BY_NAME:
            return _DTYPES_BY_NAME[short]
        if short in _QSCHEMES:
            return _QSCHEMES[short]
        if short in ("float", "half"):
            return _DTYPES_BY_NAME["float32" if short == "float" else "float16"]
        return value
    if isinstance(value, dict):
        if "class" in value:
            return constructor_from_spec(value, where, validate=False)
        return {k: _spec_value_to_jaxq(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [_spec_value_to_jaxq(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _wrap_callable(arg: Any, key: str, where: str, to_side: str) -> Any:
    if not isinstance(arg, CallableArg):
        raise ValueError(f"{where}.callable_args[{key!r}] must be a callable kept by a live "
                         "conversion; files cannot hold callables")
    function = arg.function
    if arg.side == to_side:
        return function
    if to_side == "jaxq":
        return lambda: _spec_value_to_jaxq(_torch_value_to_spec(function(), where), where)
    return lambda: _spec_value_to_torch(_jaxq_value_to_spec(function(), where), where)


def _probe(ctor: Any, where: str) -> None:
    """Builds ``ctor()`` once so that unsupported argument combinations fail here, naming
    the entry, rather than inside prepare()."""
    try:
        ctor()
    except (TypeError, ValueError, NotImplementedError) as error:
        raise ValueError(f"{where}: jaxq cannot build {ctor!r}: {error}") from None


def constructor_from_spec(spec: Any, where: str = "constructor", validate: bool = True) -> Any:
    """The jaxq constructor a spec describes (a class or a ``with_args`` factory).

    Args:
      spec: a constructor spec or None.
      where: names the entry in error messages (``"object_type[torch.nn.Linear].weight"``).
      validate: build it once to reject argument combinations jaxq does not support.

    Raises:
      ValueError: naming ``where`` for a malformed spec, an unknown class or an
        unsupported combination of arguments (e.g. a dtype the observer does not accept).
    """
    if spec is None:
        return None
    _check_spec(spec, where)
    cls = _jaxq_class(spec["class"], where)
    kwargs = {k: _spec_value_to_jaxq(v, f"{where}.{k}")
              for k, v in spec.get("kwargs", {}).items()}
    callables = {k: _wrap_callable(v, k, where, "jaxq")
                 for k, v in spec.get("callable_args", {}).items()}
    if (kwargs or callables) and not hasattr(cls, "with_args"):
        raise ValueError(f"{where}: {spec['class']} takes no arguments; got "
                         f"{sorted({**kwargs, **callables})}")
    ctor: Any = cls
    if kwargs or callables:
        from jaxq.observer.partial import _with_args
        ctor = _with_args(cls, **kwargs)
        if callables:
            ctor = ctor.with_callable_args(**callables)
    if validate:
        _probe(ctor, where)
    return ctor


# --- spec -> torch ---------------------------------------------------------------------

def _spec_value_to_torch(value: Any, where: str) -> Any:
    torch = require_torch()
    if isinstance(value, str) and value.startswith("torch."):
        short = value[len("torch."):]
        if short in _DTYPES_BY_NAME or short in _QSCHEMES:
            obj = getattr(torch, short, None)
            if obj is None:
                raise ValueError(f"{where}={value!r}: this torch has no torch.{short}")
            return obj
        return value
    if isinstance(value, dict):
        if "class" in value:
            return torch_constructor_from_spec(value, where)
        return {k: _spec_value_to_torch(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [_spec_value_to_torch(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def torch_constructor_from_spec(spec: Any, where: str = "constructor") -> Any:
    """The torch constructor a spec describes (needs torch)."""
    if spec is None:
        return None
    _check_spec(spec, where)
    name = _lookup_class_name(spec["class"], where)
    if name == IDENTITY_NAME:
        cls = require_torch().nn.Identity
    elif name in type_names.TORCH_TO_JAXQ:
        cls = type_names.import_object(name)
    else:
        torch_names = type_names.torch_names_for(_jaxq_class(name, where))
        if not torch_names:
            raise ValueError(f"{where}: {name!r} has no torch equivalent")
        cls = type_names.import_object(torch_names[0])
    kwargs = {k: _spec_value_to_torch(v, f"{where}.{k}")
              for k, v in spec.get("kwargs", {}).items()}
    callables = {k: _wrap_callable(v, k, where, "torch")
                 for k, v in spec.get("callable_args", {}).items()}
    if not kwargs and not callables:
        return cls
    ctor = cls.with_args(**kwargs)
    return ctor.with_callable_args(**callables) if callables else ctor


# --- QConfigs --------------------------------------------------------------------------

def _translate_activation_axis(spec: Any, where: str, to: str) -> Any:
    """torch channels-first activation ch_axis <-> jaxq channels-last (see module doc)."""
    if spec is None:
        return None
    spec = dict(spec)
    kwargs = dict(spec.get("kwargs", {}))
    if isinstance(kwargs.get("observer"), dict):
        kwargs["observer"] = _translate_activation_axis(kwargs["observer"], where, to)
    if "ch_axis" in kwargs:
        axis = kwargs["ch_axis"]
        table = {0: 0, 1: -1} if to == "jaxq" else {0: 0, -1: 1}
        if isinstance(axis, bool) or axis not in table:
            side = "torch (channels-first)" if to == "jaxq" else "jaxq (channels-last)"
            raise ValueError(f"{where}.ch_axis={axis!r}: a per-channel activation axis of "
                             f"{side} translates only from {sorted(table)} (batch or channel "
                             "axis)")
        kwargs["ch_axis"] = table[axis]
    if kwargs:
        spec["kwargs"] = kwargs
    return spec


def _check_qconfig_spec(spec: Any, where: str) -> None:
    if spec is None:
        return
    if not isinstance(spec, dict) or set(spec) != {"activation", "weight"}:
        raise ValueError(f"{where}: a QConfig must be null or an object with exactly the "
                         f"entries \"activation\" and \"weight\"; got {spec!r}")


def _is_qconfig(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "activation") and hasattr(obj, "weight")


def torch_qconfig_spec(qconfig: Any, where: str = "qconfig") -> dict[str, Any] | None:
    """The spec of a torch QConfig (or QConfigDynamic), None for None."""
    if qconfig is None:
        return None
    if not _is_qconfig(qconfig):
        raise TypeError(f"{where}={qconfig!r} must be a torch QConfig or None")
    return {"activation": torch_constructor_spec(qconfig.activation, f"{where}.activation"),
            "weight": torch_constructor_spec(qconfig.weight, f"{where}.weight")}


def jaxq_qconfig_spec(qconfig: Any, where: str = "qconfig") -> dict[str, Any] | None:
    """The torch-semantics spec of a jaxq QConfig (activation ch_axis back to channels-first)."""
    if qconfig is None:
        return None
    if not _is_qconfig(qconfig):
        raise TypeError(f"{where}={qconfig!r} must be a jaxq QConfig or None")
    activation = jaxq_constructor_spec(qconfig.activation, f"{where}.activation")
    return {"activation": _translate_activation_axis(activation, f"{where}.activation",
                                                     "torch"),
            "weight": jaxq_constructor_spec(qconfig.weight, f"{where}.weight")}


def qconfig_from_spec(spec: Any, where: str = "qconfig") -> Any:
    """The jaxq QConfig a spec describes (None for None); every constructor is built once
    to validate it."""
    from jaxq.qconfig import QConfig
    _check_qconfig_spec(spec, where)
    if spec is None:
        return None
    activation = _translate_activation_axis(spec["activation"], f"{where}.activation", "jaxq")
    return QConfig(activation=constructor_from_spec(activation, f"{where}.activation"),
                   weight=constructor_from_spec(spec["weight"], f"{where}.weight"))


def torch_qconfig_from_spec(spec: Any, where: str = "qconfig") -> Any:
    """The torch QConfig a spec describes (needs torch)."""
    _check_qconfig_spec(spec, where)
    if spec is None:
        return None
    torch = require_torch()
    return torch.ao.quantization.QConfig(
        activation=torch_constructor_from_spec(spec["activation"], f"{where}.activation"),
        weight=torch_constructor_from_spec(spec["weight"], f"{where}.weight"))
