"""``prepare`` / ``prepare_qat`` / ``add_quant_dequant``: observer attachment.

Split out of :mod:`jaxq.eager.quantize`; see its docs for how observers attach to NNX
modules (``Observed<Cls>`` subclasses) and for the ``inplace`` atomicity rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flax import nnx

from jaxq.eager._common import (
    _apply,
    _check_bool,
    _functional_classes,
    _fused_module_class,
    _has_children,
    _is_training,
    get_default_custom_config_dict,
)
from jaxq.eager._tree import check_module, named_children, named_modules, set_child
from jaxq.eager.conversion import _convert
from jaxq.eager.hooks import add_activation_post_process, type_before_observation
from jaxq.eager.propagate import _propagate
from jaxq.eager.stubs import DeQuantStub, QuantWrapper
from jaxq.quantization_mappings import (
    _get_special_act_post_process,
    _has_special_act_post_process,
    get_default_qat_module_mappings,
    get_default_qconfig_propagation_list,
    mapping_classes,
    no_observer_set,
)

__all__ = ["prepare", "prepare_qat", "add_quant_dequant"]

def _is_memoryless(activation_post_process: Any) -> bool:
    """torch's ``_activation_is_memoryless`` on an already built observer."""
    observer = getattr(activation_post_process, "activation_post_process",
                       activation_post_process)
    return getattr(observer, "averaging_constant", None) == 1


def _add_observer_(module: nnx.Module, qconfig_propagation_list: Iterable[Any],
                   non_leaf_module_list: Iterable[Any] | None,
                   custom_module_class_mapping: dict, training: bool) -> None:
    fused_class = _fused_module_class()
    functional_classes = _functional_classes()
    propagation = set(qconfig_propagation_list)
    non_leaf = set(non_leaf_module_list) if non_leaf_module_list is not None else None

    def needs_observation(m: Any) -> bool:
        return getattr(m, "qconfig", None) is not None

    def insert(m: nnx.Module, special: Callable | None = None) -> None:
        if needs_observation(m) and not isinstance(m, DeQuantStub):
            observer = m.qconfig.activation() if special is None else special()
            add_activation_post_process(m, observer, pre_hook=_is_memoryless(observer))

    def visit(parent: nnx.Module) -> None:
        for name, child in list(named_children(parent)):
            child_type = type_before_observation(child)
            if child_type is nnx.Dropout:
                continue
            if functional_classes and issubclass(child_type, functional_classes):
                if needs_observation(child):
                    if not hasattr(child, "activation_post_process"):
                        raise ValueError(f"functional class {child_type.__name__} has no "
                                         "pre-defined `activation_post_process`")
                    child.activation_post_process = child.qconfig.activation()
            elif isinstance(child, fused_class):
                insert(child)
            elif non_leaf is not None and child_type in non_leaf:
                insert(child)
            elif _has_special_act_post_process(child, training):
                insert(child, _get_special_act_post_process(child))
            elif needs_observation(child) and child_type in custom_module_class_mapping:
                observed_class = custom_module_class_mapping[child_type]
                observed_child = observed_class.from_float(child)
                set_child(parent, name, observed_child)
                if not issubclass(observed_class, tuple(no_observer_set())):
                    insert(observed_child)
            else:
                visit(child)
        parent_type = type_before_observation(parent)
        if parent_type in propagation and not isinstance(parent, nnx.Sequential) and (
                not _has_children(parent) or hasattr(parent, "weight_fake_quant")):
            insert(parent)

    visit(module)


def _prepare(model: nnx.Module, allow_list: Any, observer_non_leaf_module_list: Any,
             prepare_custom_config_dict: dict | None) -> None:
    if prepare_custom_config_dict is None:
        prepare_custom_config_dict = get_default_custom_config_dict()
    if not isinstance(prepare_custom_config_dict, dict):
        raise TypeError("prepare_custom_config_dict must be a dict (or None); got "
                        f"{type(prepare_custom_config_dict).__name__}")
    custom_module_class_mapping = prepare_custom_config_dict.get(
        "float_to_observed_custom_module_class", {})
    qconfig_propagation_list = (get_default_qconfig_propagation_list()
                                if allow_list is None else allow_list)
    training = _is_training(model)
    _propagate(model, None)
    if not any(vars(m).get("qconfig") for _, m in named_modules(model)):
        raise ValueError("None of the submodule got qconfig applied. Make sure you passed "
                         "correct configuration through `qconfig_dict` or by assigning the "
                         "`.qconfig` attribute directly on submodules (e.g. "
                         "model.qconfig = jaxq.qconfig.get_default_qconfig('x86'))")
    _add_observer_(model, qconfig_propagation_list, observer_non_leaf_module_list,
                   custom_module_class_mapping, training)


def prepare(model: nnx.Module, inplace: bool = False, allow_list: Any = None,
            observer_non_leaf_module_list: Any = None,
            prepare_custom_config_dict: dict | None = None) -> nnx.Module:
    """Propagates qconfigs and attaches observers for calibration (torch's ``prepare``).

    Every leaf module whose type is in ``allow_list`` (default: the keys of the static,
    QAT and dynamic mappings) and has a qconfig gets ``activation_post_process =
    qconfig.activation()`` and becomes ``Observed<Cls>``; fused modules and the
    ``observer_non_leaf_module_list`` types are observed as a whole.

    Args:
      model: the float model with ``qconfig`` attributes.
      inplace: modify ``model`` (else a prepared copy is returned).
      allow_list: module types to observe.
      observer_non_leaf_module_list: non-leaf module types to observe.
      prepare_custom_config_dict: ``{"float_to_observed_custom_module_class": {...}}``.

    Raises:
      TypeError: ``model`` is not an ``nnx.Module``.
      ValueError: no submodule has a qconfig. The model is unchanged on error.
    """
    check_module(model)
    _check_bool(inplace, "inplace")
    return _apply(model, inplace, lambda m: _prepare(
        m, allow_list, observer_non_leaf_module_list, prepare_custom_config_dict))


def prepare_qat(model: nnx.Module, mapping: dict | None = None, inplace: bool = False
                ) -> nnx.Module:
    """Swaps modules for their QAT versions and attaches fake-quant observers.

    torch's ``prepare_qat``: ``propagate_qconfig_`` -> ``convert(mapping,
    remove_qconfig=False)`` -> ``prepare(observer_non_leaf_module_list=QAT classes)``.

    Raises:
      ValueError: the model is in eval mode (``model.train()`` first), or no submodule
        has a qconfig. The model is unchanged on error.
    """
    check_module(model)
    _check_bool(inplace, "inplace")
    if not _is_training(model):
        raise ValueError("prepare_qat only works on models in training mode; call "
                         "model.train() first (a submodule has use_running_average=True "
                         "or deterministic=True)")
    if mapping is None:
        mapping = get_default_qat_module_mappings()

    def transform(work: nnx.Module) -> None:
        _propagate(work, None)
        if not any(getattr(m, "qconfig", None) for _, m in named_modules(work)):
            raise ValueError("None of the submodule got qconfig applied. Assign `.qconfig` "
                             "(e.g. model.qconfig = "
                             "jaxq.qconfig.get_default_qat_qconfig('x86')) before prepare_qat")
        # torch passes the default custom config here, whose observed -> quantized entries
        # then try to quantize still-unobserved custom modules (quantizable LSTM / MHA) and
        # fail. This pass only swaps float modules for QAT ones; custom modules are
        # prepared by `_prepare` below, as in `prepare`.
        _convert(work, mapping, is_reference=False,
                 convert_custom_config_dict={"observed_to_quantized_custom_module_class": {}},
                 use_precomputed_fake_quant=False)
        _prepare(work, None, mapping_classes(mapping.values()), None)

    return _apply(model, inplace, transform)


def add_quant_dequant(module: nnx.Module) -> nnx.Module:
    """Wraps every leaf module that has a qconfig in :class:`QuantWrapper` (in place).

    Returns ``module`` itself, or a new ``QuantWrapper(module)`` when ``module`` is such
    a leaf (torch's ``add_quant_dequant``).
    """
    check_module(module, "module")
    if not _has_children(module) and vars(module).get("qconfig"):
        return QuantWrapper(module)
    for name, child in list(named_children(module)):
        wrapped = add_quant_dequant(child)
        if wrapped is not child:
            set_child(module, name, wrapped)
    return module
