"""QConfigMapping <-> its torch-named spec (the form files hold), both directions.

The spec mirrors ``QConfigMapping.to_dict()`` key by key, in order:

.. code-block:: python

    {
      "": <qconfig>,                                       # global
      "object_type": [[<type name>, <qconfig>], ...],
      "module_name_regex": [[<regex>, <qconfig>], ...],
      "module_name": [[<module name>, <qconfig>], ...],
      "module_name_object_type_order": [[<module name>, <type name>, <index>, <qconfig>], ...],
    }

with QConfigs as in :mod:`jaxq.interop.specs` and type names as torch spells them
(``"torch.nn.Linear"``, ``"torch.nn.functional.relu"``, ``"reshape"``) or, for jaxq objects
standing for several torch names, their jaxq path (``"flax.nnx.Conv"``).

torch -> jaxq: each type name goes through :mod:`jaxq.backend_config.type_names`. Several torch
names may land on one jaxq object (``Conv1d``/``Conv2d``/``Conv3d`` -> ``nnx.Conv``;
``nn.ReLU``/``F.relu``/``"relu"`` -> ``jax.nn.relu``): with the same qconfig they merge into
the first entry's position; with different qconfigs jaxq cannot tell them apart and raises,
naming both. Names of ops that JAX does not have (``torch.nn.functional.layer_norm``, ...)
can never match a JAX model: they are left out with a :class:`TranslationWarning` that
lists them (``strict=True`` raises instead). Order and torch's precedence (global <
object type < regex < module name < call order) are kept, since jaxq's QConfigMapping
resolves exactly as torch's.

jaxq -> torch: a jaxq object expands into every torch name that translates to it.
"""

from __future__ import annotations

from typing import Any

from jaxq.interop import specs
from jaxq.interop._common import (
    Untranslatable,
    report_dropped,
    resolve_type_name,
    torch_objects_for_name,
    torch_type_name_of,
    type_name_of_jaxq,
)

__all__ = ["torch_mapping_spec", "jaxq_mapping_spec", "mapping_from_spec",
           "torch_mapping_from_spec", "Resolved", "SECTIONS"]

GLOBAL = ""
OBJECT_TYPE = "object_type"
REGEX = "module_name_regex"
MODULE_NAME = "module_name"
ORDER = "module_name_object_type_order"
SECTIONS = (GLOBAL, OBJECT_TYPE, REGEX, MODULE_NAME, ORDER)


class Resolved:
    """An object type already translated by the caller's ``type_map`` (live conversions
    only; files hold names)."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Resolved) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"Resolved({self.obj!r})"


def _mapping_spec(mapping: Any, name_of, qconfig_spec) -> dict[str, Any]:
    spec: dict[str, Any] = {GLOBAL: qconfig_spec(mapping.global_qconfig, "global")}
    spec[OBJECT_TYPE] = [
        [name_of(obj, f"object_type[{obj!r}]"),
         qconfig_spec(qconfig, f"object_type[{obj!r}]")]
        for obj, qconfig in mapping.object_type_qconfigs.items()]
    spec[REGEX] = [[regex, qconfig_spec(qconfig, f"module_name_regex[{regex!r}]")]
                   for regex, qconfig in mapping.module_name_regex_qconfigs.items()]
    spec[MODULE_NAME] = [[name, qconfig_spec(qconfig, f"module_name[{name!r}]")]
                         for name, qconfig in mapping.module_name_qconfigs.items()]
    spec[ORDER] = [
        [module, name_of(obj, f"module_name_object_type_order[{module!r}, {obj!r}]"), index,
         qconfig_spec(qconfig, f"module_name_object_type_order[{module!r}, {obj!r}, {index}]")]
        for (module, obj, index), qconfig in
        mapping.module_name_object_type_order_qconfigs.items()]
    return spec


def torch_mapping_spec(mapping: Any, type_map: dict | None = None) -> dict[str, Any]:
    """The spec of a live torch ``QConfigMapping``.

    Args:
      mapping: a ``torch.ao.quantization.QConfigMapping``.
      type_map: optional ``{torch object: jaxq object}`` for object types outside jaxq's
        table (your own module classes).
    """
    type_map = dict(type_map or {})

    def name_of(obj: Any, where: str) -> Any:
        for torch_obj, jaxq_obj in type_map.items():
            if torch_obj is obj:
                return Resolved(jaxq_obj)
        return torch_type_name_of(obj, where)

    return _mapping_spec(mapping, name_of, specs.torch_qconfig_spec)


def jaxq_mapping_spec(mapping: Any) -> dict[str, Any]:
    """The torch-named spec of a jaxq ``QConfigMapping``."""
    return _mapping_spec(mapping, type_name_of_jaxq, specs.jaxq_qconfig_spec)


def _check_entries(spec: dict[str, Any], key: str, arity: int) -> list[Any]:
    entries = spec.get(key, [])
    if not isinstance(entries, list):
        raise ValueError(f"{key!r} must be a list of {arity}-element lists; got {entries!r}")
    for entry in entries:
        if not isinstance(entry, (list, tuple)) or len(entry) != arity:
            raise ValueError(f"{key!r} entries must be {arity}-element lists; got {entry!r}")
    return entries


def _check_mapping_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        raise ValueError(f"a QConfigMapping must be an object with the entries "
                         f"{list(SECTIONS)}; got {type(spec).__name__}")
    unknown = [key for key in spec if key not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown QConfigMapping entries {unknown}; accepted: "
                         f"{list(SECTIONS)}")


def _resolve(name: Any, where: str) -> Any:
    if isinstance(name, Resolved):
        return name.obj
    return resolve_type_name(name, where)


def _key(obj: Any) -> Any:
    return ("method", obj) if isinstance(obj, str) else ("object", id(obj))


def mapping_from_spec(spec: Any, strict: bool = False) -> Any:
    """The jaxq ``QConfigMapping`` a spec describes (see the module docstring).

    Raises:
      ValueError: naming the entry for malformed specs, unknown type names or observer
        classes, unsupported argument combinations, and torch entries that collapse onto
        one jaxq object with different qconfigs.
    """
    from jaxq.qconfig_mapping import QConfigMapping

    _check_mapping_spec(spec)
    built: dict[str, Any] = {}

    def qconfig(qspec: Any, where: str) -> Any:
        cache_key = repr(qspec)
        if cache_key not in built:
            built[cache_key] = specs.qconfig_from_spec(qspec, where)
        return built[cache_key]

    result = QConfigMapping()
    if GLOBAL in spec:
        result.set_global(qconfig(spec[GLOBAL], "global"))
    dropped: list[str] = []
    seen: dict[Any, tuple[Any, Any]] = {}
    for name, qspec in _check_entries(spec, OBJECT_TYPE, 2):
        where = f"object_type[{name!r}]"
        try:
            obj = _resolve(name, where)
        except Untranslatable as error:
            dropped.append(str(error))
            continue
        key = _key(obj)
        if key in seen:
            first_name, first_spec = seen[key]
            if first_spec != qspec:
                raise ValueError(f"object_type entries {first_name!r} and {name!r} both "
                                 f"translate to {obj!r} but have different qconfigs; jaxq "
                                 "cannot tell them apart")
            continue
        seen[key] = (name, qspec)
        result.set_object_type(obj, qconfig(qspec, where))
    for regex, qspec in _check_entries(spec, REGEX, 2):
        result.set_module_name_regex(regex, qconfig(qspec, f"module_name_regex[{regex!r}]"))
    for module, qspec in _check_entries(spec, MODULE_NAME, 2):
        result.set_module_name(module, qconfig(qspec, f"module_name[{module!r}]"))
    seen_order: dict[Any, tuple[Any, Any]] = {}
    for module, name, index, qspec in _check_entries(spec, ORDER, 4):
        where = f"module_name_object_type_order[{module!r}, {name!r}, {index!r}]"
        try:
            obj = _resolve(name, where)
        except Untranslatable as error:
            dropped.append(str(error))
            continue
        key = (module, _key(obj), index)
        if key in seen_order:
            first_name, first_spec = seen_order[key]
            if first_spec != qspec:
                raise ValueError(f"{where} and the entry for {first_name!r} translate to the "
                                 "same jaxq key with different qconfigs")
            continue
        seen_order[key] = (name, qspec)
        result.set_module_name_object_type_order(module, obj, index, qconfig(qspec, where))
    report_dropped(dropped, "QConfigMapping", strict)
    return result


def torch_mapping_from_spec(spec: Any) -> Any:
    """The torch ``QConfigMapping`` a spec describes (needs torch); jaxq objects expand
    into every torch name that translates to them."""
    import torch.ao.quantization as tq

    _check_mapping_spec(spec)
    result = tq.QConfigMapping()
    if GLOBAL in spec:
        result.set_global(specs.torch_qconfig_from_spec(spec[GLOBAL], "global"))

    def torch_objects(name: Any, where: str) -> list[Any]:
        if isinstance(name, Resolved):
            name = type_name_of_jaxq(name.obj, where)
        return torch_objects_for_name(name, where)

    for name, qspec in _check_entries(spec, OBJECT_TYPE, 2):
        where = f"object_type[{name!r}]"
        qconfig = specs.torch_qconfig_from_spec(qspec, where)
        for obj in torch_objects(name, where):
            result.set_object_type(obj, qconfig)
    for regex, qspec in _check_entries(spec, REGEX, 2):
        result.set_module_name_regex(
            regex, specs.torch_qconfig_from_spec(qspec, f"module_name_regex[{regex!r}]"))
    for module, qspec in _check_entries(spec, MODULE_NAME, 2):
        result.set_module_name(
            module, specs.torch_qconfig_from_spec(qspec, f"module_name[{module!r}]"))
    for module, name, index, qspec in _check_entries(spec, ORDER, 4):
        where = f"module_name_object_type_order[{module!r}, {name!r}, {index!r}]"
        qconfig = specs.torch_qconfig_from_spec(qspec, where)
        for obj in torch_objects(name, where):
            result.set_module_name_object_type_order(module, obj, index, qconfig)
    return result
