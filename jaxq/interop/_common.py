"""Shared helpers of :mod:`jaxq.interop`: torch detection, errors, type-name resolution.

Nothing here imports torch at module import time; torch is imported only when a live
torch object is being converted (it is then already imported by the caller).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from jaxq.backend_config import type_names

__all__ = ["TranslationWarning", "is_torch_object", "require_torch", "resolve_type_name",
           "type_name_of_jaxq", "torch_type_name_of", "torch_objects_for_name", "Untranslatable",
           "report_dropped"]


class TranslationWarning(UserWarning):
    """Emitted when a torch entry names an op that has no JAX counterpart and is left out."""


class Untranslatable(LookupError):
    """A torch name the table knows but that has no jaxq object (note says why)."""


def require_torch() -> Any:
    """``import torch``, or an ImportError saying which feature needs it."""
    try:
        return importlib.import_module("torch")
    except ImportError as error:  # pragma: no cover - torch is a test dependency
        raise ImportError("this jaxq.interop function converts live PyTorch objects and "
                          "needs torch installed; the JSON/YAML files of "
                          "jaxq.load_qconfig_mapping do not") from error


def _from_torch_module(module: Any) -> bool:
    return isinstance(module, str) and (module == "torch" or module.startswith("torch."))


def is_torch_object(obj: Any) -> bool:
    """True for torch classes (and subclasses of them), functions, partials over them and
    instances of torch classes (decided from module names, without importing torch)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return False
    import functools
    if isinstance(obj, functools.partial):
        return is_torch_object(obj.func)
    cls = obj if isinstance(obj, type) else type(obj)
    if any(_from_torch_module(getattr(base, "__module__", None)) for base in cls.__mro__):
        return True
    return callable(obj) and _from_torch_module(getattr(obj, "__module__", None))


def torch_type_name_of(obj: Any, where: str) -> str:
    """The table name of a torch class / function / method-name string.

    Raises:
      ValueError: naming ``where`` and the object when the table does not know it.
    """
    try:
        return type_names.torch_name_of(obj)
    except KeyError:
        shown = obj if isinstance(obj, str) else getattr(obj, "__qualname__", repr(obj))
        module = "" if isinstance(obj, str) else getattr(obj, "__module__", "")
        full = f"{module}.{shown}" if module else shown
        raise ValueError(f"{where}: {full!r} has no jaxq equivalent: it is not in jaxq's "
                         "torch translation table (jaxq.backend_config.type_names."
                         "TORCH_TO_JAXQ); pass type_map={torch_object: jaxq_object} to "
                         "translate your own classes") from None


def resolve_type_name(name: str, where: str) -> Any:
    """The jaxq object a serialised type name stands for.

    Accepted: a key of the torch table (``"torch.nn.Linear"``, ``"reshape"``), or the
    dotted import path of a jaxq / Flax / JAX / Python object (``"flax.nnx.Conv"``,
    ``"jax.nn.relu"``, ``"mypackage.MyModule"``). Never imports torch.

    Raises:
      Untranslatable: a table name whose op has no JAX counterpart (or not yet in jaxq).
      ValueError: naming ``where`` for any other unknown name.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: type name {name!r} must be a non-empty string")
    if name in type_names.TORCH_TO_JAXQ:
        try:
            return type_names.to_jaxq(name)
        except LookupError as error:
            raise Untranslatable(f"{where}: {error}") from None
    if name.startswith("torch.") or type_names.is_method_name(name):
        raise ValueError(f"{where}: unknown type name {name!r}: not in jaxq's torch "
                         "translation table (jaxq.backend_config.type_names.TORCH_TO_JAXQ)")
    try:
        return type_names.import_object(name)
    except (LookupError, TypeError):
        raise ValueError(f"{where}: type name {name!r} names nothing importable") from None


def type_name_of_jaxq(obj: Any, where: str) -> str:
    """The serialised name of a jaxq object type / function / method string.

    A torch name when exactly one torch name translates to ``obj`` (``nnx.Linear`` ->
    ``"torch.nn.Linear"``); otherwise the jaxq path (``nnx.Conv`` -> ``"flax.nnx.Conv"``,
    which stands for Conv1d/2d/3d); objects outside the table by ``module.qualname``.
    """
    if isinstance(obj, str):
        return obj
    names = type_names.torch_names_for(obj)
    if len(names) == 1:
        return names[0]
    path = type_names.jaxq_path_of(obj)
    if path is not None:
        return path
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname and "<" not in qualname:
        path = f"{module}.{qualname}"
        try:
            if type_names.import_object(path) is obj:
                return path
        except (LookupError, TypeError):
            pass
    raise ValueError(f"{where}: {obj!r} cannot be named in a file: it is not in jaxq's torch "
                     "translation table and not importable by module.qualname")


def torch_objects_for_name(name: str, where: str) -> list[Any]:
    """The torch objects a serialised name stands for (``to_torch`` direction).

    A torch table name gives that torch object; a jaxq path (``"flax.nnx.Conv"``) gives
    every torch name translating to it (Conv1d, Conv2d, Conv3d), in table order.
    """
    if name in type_names.TORCH_TO_JAXQ:
        return [name if type_names.is_method_name(name) else type_names.import_object(name)]
    obj = resolve_type_name(name, where)
    names = type_names.torch_names_for(obj)
    if not names:
        raise ValueError(f"{where}: {name!r} has no torch equivalent in jaxq's translation "
                         "table")
    return [n if type_names.is_method_name(n) else type_names.import_object(n) for n in names]


def report_dropped(dropped: list[str], what: str, strict: bool) -> None:
    """Warns (or raises, when ``strict``) about entries left out because jaxq has no
    counterpart for the torch op they name."""
    if not dropped:
        return
    message = (f"{what}: {len(dropped)} entr{'y' if len(dropped) == 1 else 'ies'} name torch "
               "objects without a jaxq counterpart (an op JAX lacks, or a jaxq module not "
               "written yet) and were left out: " + "; ".join(dropped))
    if strict:
        raise ValueError(message + " (strict=True)")
    warnings.warn(message, TranslationWarning, stacklevel=3)
