"""QConfigMappings as JSON / YAML files in torch's terms, readable without torch.

The file is the spec of :mod:`jaxq.interop.mapping`: ``QConfigMapping.to_dict()`` written
with names. Example (JSON)::

    {
      "": {"activation": {"class": "torch.ao.quantization.observer.HistogramObserver",
                          "kwargs": {"reduce_range": true}},
           "weight": {"class": "torch.ao.quantization.observer.PerChannelMinMaxObserver",
                      "kwargs": {"dtype": "torch.qint8",
                                 "qscheme": "torch.per_channel_symmetric"}}},
      "object_type": [["torch.nn.Linear", null], ["reshape", {...}]],
      "module_name_regex": [["blocks\\\\..*\\\\.fc", {...}]],
      "module_name": [["head", null]],
      "module_name_object_type_order": [["block", "torch.nn.functional.linear", 0, {...}]]
    }

* ``null`` QConfig = do not quantize; ``null`` constructor = no observer.
* ``"class"``: torch's dotted class name, or the bare name (``"MinMaxObserver"``), or
  ``"torch.nn.Identity"``.
* ``"kwargs"``: torch's constructor keywords; dtypes and qschemes by torch's name
  (``"torch.quint8"``, ``"torch.per_tensor_affine"``: any string ``"torch.<name>"`` that names
  a dtype or qscheme is one); a nested constructor (FakeQuantize's ``observer``) is a nested
  ``{"class": ..., "kwargs": ...}``.
* type names: torch's (``"torch.nn.Conv2d"``, ``"torch.nn.functional.relu"``, ``"reshape"``)
  or a jaxq path (``"flax.nnx.Conv"``).

Writing: :func:`save_qconfig_mapping` takes a jaxq **or a live torch** QConfigMapping, so
``torch -> file`` and ``file -> jaxq`` (:func:`load_qconfig_mapping`) are one call each.
Loading never imports torch.

Example:
  >>> import os, tempfile
  >>> from jaxq.qconfig_mapping import get_default_qconfig_mapping
  >>> path = os.path.join(tempfile.mkdtemp(), "recipe.json")
  >>> save_qconfig_mapping(get_default_qconfig_mapping("qnnpack"), path)
  >>> mapping = load_qconfig_mapping(path)
  >>> type(mapping.global_qconfig.activation()).__name__
  'HistogramObserver'
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from jaxq.interop import mapping as mapping_specs
from jaxq.interop._common import is_torch_object
from jaxq.interop.specs import CallableArg

__all__ = ["save_qconfig_mapping", "load_qconfig_mapping", "qconfig_mapping_to_dict",
           "qconfig_mapping_from_dict"]

_YAML_SUFFIXES = (".yaml", ".yml")


def _check_serialisable(value: Any, where: str) -> None:
    if isinstance(value, CallableArg):
        raise ValueError(f"{where}: a with_callable_args callable ({value.function!r}) cannot "
                         "be written to a file; bind a plain value with with_args instead")
    if isinstance(value, mapping_specs.Resolved):
        raise ValueError(f"{where}: {value.obj!r} came from type_map and has no name a file "
                         "can hold")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}={value}: files hold finite numbers only")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_serialisable(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_serialisable(item, f"{where}[{index}]")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"{where}={value!r} is not a JSON value")


def qconfig_mapping_to_dict(mapping: Any) -> dict[str, Any]:
    """The JSON-ready dict of a jaxq or a live torch ``QConfigMapping`` (the file content).

    Raises:
      ValueError / TypeError: naming the entry for anything a file cannot hold (callables,
        unknown classes or types).
    """
    if isinstance(mapping, dict):
        spec = mapping
    elif is_torch_object(mapping):
        spec = mapping_specs.torch_mapping_spec(mapping)
    else:
        from jaxq.qconfig_mapping import QConfigMapping
        if not isinstance(mapping, QConfigMapping):
            raise TypeError(f"mapping={mapping!r} must be a jaxq or torch QConfigMapping")
        spec = mapping_specs.jaxq_mapping_spec(mapping)
    _check_serialisable(spec, "mapping")
    return spec


def qconfig_mapping_from_dict(data: Any, strict: bool = False) -> Any:
    """The jaxq ``QConfigMapping`` of a file's dict (see :mod:`jaxq.interop.mapping`)."""
    _check_serialisable(data, "mapping")
    return mapping_specs.mapping_from_spec(data, strict=strict)


def _is_yaml(path: str) -> bool:
    return str(path).lower().endswith(_YAML_SUFFIXES)


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise ImportError("reading or writing a .yaml/.yml QConfigMapping needs PyYAML "
                          "(pip install pyyaml); JSON files need nothing") from None
    return yaml


def save_qconfig_mapping(mapping: Any, path: str | os.PathLike) -> None:
    """Writes a jaxq or live torch ``QConfigMapping`` to ``path`` in torch's terms.

    JSON, or YAML when ``path`` ends in ``.yaml``/``.yml`` (needs PyYAML).

    Args:
      mapping: ``jaxq.QConfigMapping`` or ``torch.ao.quantization.QConfigMapping``.
      path: the file to write.

    Raises:
      ValueError: naming the entry a file cannot hold (a callable argument, a class
        outside jaxq's table).
      ImportError: YAML requested without PyYAML.
    """
    data = qconfig_mapping_to_dict(mapping)
    path = os.fspath(path)
    if _is_yaml(path):
        text = _yaml().safe_dump(data, sort_keys=False, default_flow_style=None)
    else:
        text = json.dumps(data, indent=2) + "\n"
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)


def load_qconfig_mapping(path: str | os.PathLike, strict: bool = False) -> Any:
    """Reads a file written by :func:`save_qconfig_mapping` (or by hand) into a jaxq
    ``QConfigMapping``. Does not need torch.

    Args:
      path: a JSON file, or YAML when it ends in ``.yaml``/``.yml``.
      strict: raise instead of warning when an entry names a torch op without a JAX
        counterpart (e.g. ``torch.nn.functional.layer_norm``).

    Raises:
      ValueError: naming the file and the entry for malformed content, unknown observer
        classes or type names, and unsupported argument combinations.
      ImportError: a YAML file without PyYAML.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as file:
        text = file.read()
    if _is_yaml(path):
        yaml = _yaml()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: malformed YAML: {error}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: malformed JSON at line {error.lineno}, column "
                             f"{error.colno}: {error.msg}") from None
    try:
        return qconfig_mapping_from_dict(data, strict=strict)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{path}: {error}") from None
