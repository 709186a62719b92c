"""PyTorch interop: bring your torch quantization recipe (and checkpoints) into jaxq.

* :func:`from_torch` / :func:`to_torch`: QConfig, QConfigMapping, BackendConfig, custom
  configs, observer / fake-quantize constructors, dtypes and qschemes.
* :func:`save_qconfig_mapping` / :func:`load_qconfig_mapping`: the JSON / YAML form of a
  QConfigMapping in torch's terms (loading needs no torch).
* :func:`load_torch_observer_state_dict`: torch's ``get_observer_state_dict`` output into a
  prepared jaxq model, so calibration done in torch carries over.
* :func:`load_torch_state_dict`: a converted torch model's ``state_dict`` into the jaxq
  quantized model.

The torch -> jaxq name table is :mod:`jaxq.backend_config.type_names`; see
``docs/torch_interop.md``.
"""

from jaxq.interop._common import TranslationWarning
from jaxq.interop.checkpoint import load_torch_observer_state_dict, load_torch_state_dict
from jaxq.interop.convert import from_torch, to_torch
from jaxq.interop.serialization import (
    load_qconfig_mapping,
    qconfig_mapping_from_dict,
    qconfig_mapping_to_dict,
    save_qconfig_mapping,
)

__all__ = [
    "TranslationWarning",
    "from_torch",
    "to_torch",
    "save_qconfig_mapping",
    "load_qconfig_mapping",
    "qconfig_mapping_to_dict",
    "qconfig_mapping_from_dict",
    "load_torch_observer_state_dict",
    "load_torch_state_dict",
]
