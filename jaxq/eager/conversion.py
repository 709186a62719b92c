"""``convert`` / ``swap_module``: observed and QAT modules to quantized ones.

Split out of :mod:`jaxq.eager.quantize`; see its docs for the NNX mapping and for the
``inplace`` atomicity rule.
"""

from __future__ import annotations

import inspect
from typing import Any

from flax import nnx

from jaxq.eager._common import (
    _apply,
    _check_bool,
    _fused_module_class,
    get_default_custom_config_dict,
)
from jaxq.eager._tree import check_module, named_children, named_modules, set_child
from jaxq.eager.hooks import (
    is_activation_post_process,
    remove_activation_post_process,
    type_before_observation,
)
from jaxq.quantization_mappings import (
    get_default_static_quant_module_mappings,
    get_default_static_quant_reference_module_mappings,
    resolve_module_class,
)

__all__ = ["convert", "swap_module"]

def _weight_qparams(mod: Any, qmod: Any) -> dict[str, Any]:
    """The ``weight_qparams`` a reference class's ``from_float`` takes.

    A class whose torch weight is not ``kernel_to_torch(mod.kernel)`` says which kernel
    the observer sees (``_observed_kernel``: transposed convs, embeddings); the RNN cells
    build their ``weight_qparams_dict`` from one call per weight
    (``_reference_weight_qparams``).
    """
    builder = getattr(qmod, "_reference_weight_qparams", None)
    if builder is not None:
        return builder(mod, lambda kernel: _kernel_qparams(mod, kernel))
    observed_kernel = getattr(qmod, "_observed_kernel", None)
    kernel = observed_kernel(mod) if observed_kernel else mod.kernel.get_value()
    return _kernel_qparams(mod, kernel)


def _kernel_qparams(mod: Any, kernel: Any) -> dict[str, Any]:
    """torch's ``get_qparam_dict`` of ``mod.qconfig.weight()`` run on the Flax kernel.

    As torch: placeholder observers give ``{"qscheme": None, "dtype": ...}``; symmetric
    qschemes become affine (per_tensor_* -> per_tensor_affine, per_channel_symmetric ->
    per_channel_affine); ``axis`` is torch's weight axis.
    """
    from jaxq.nn.layout import weight_observer_for_kernel
    observer = weight_observer_for_kernel(mod.qconfig.weight, kernel)
    observer(kernel)
    return _qparam_dict(observer)


def _qparam_dict(observer: Any) -> dict[str, Any]:
    """torch's ``get_qparam_dict``: the weight qparams a reference ``from_float`` takes,
    read from an observer or fake-quantize module that has already seen the weight.

    Also used for a QAT module's own ``weight_fake_quant`` (graph-mode reference
    conversion, as torch's ``convert_weighted_module``).
    """
    from jaxq.core.qscheme import QScheme
    from jaxq.observer.simple import NoopObserver, PlaceholderObserver
    qscheme = getattr(observer, "qscheme", None)
    dtype = getattr(observer, "dtype", None)
    if not isinstance(qscheme, QScheme) \
            or isinstance(observer, (PlaceholderObserver, NoopObserver)):
        return {"qscheme": None, "dtype": dtype}
    qparams: dict[str, Any] = {"dtype": dtype}
    if qscheme.is_per_tensor:
        qscheme = QScheme.per_tensor_affine
    else:
        if qscheme is QScheme.per_channel_symmetric:
            qscheme = QScheme.per_channel_affine
        qparams["axis"] = getattr(observer, "torch_ch_axis", observer.ch_axis)
    qparams["qscheme"] = qscheme
    qparams["scale"], qparams["zero_point"] = observer.calculate_qparams()
    for name in ("quant_min", "quant_max"):
        if hasattr(observer, name):
            qparams[name] = getattr(observer, name)
    return qparams


def swap_module(mod: nnx.Module, mapping: dict, custom_module_class_mapping: dict,
                use_precomputed_fake_quant: bool = False) -> nnx.Module:
    """The quantized counterpart of ``mod`` if it has a qconfig and a mapping entry
    (``mapping[type](...).from_float(mod)``), else ``mod`` itself.

    ByRank mapping values (``nnx.Conv``) pick the class of ``mod``'s rank; a rank the
    ByRank does not list leaves ``mod`` as it is.

    Example:
      >>> from flax import nnx
      >>> from jaxq.qconfig import default_qat_qconfig
      >>> from jaxq.quantization_mappings import get_default_qat_module_mappings
      >>> linear = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
      >>> linear.qconfig = default_qat_qconfig
      >>> type(swap_module(linear, get_default_qat_module_mappings(), {})).__module__
      'jaxq.nn.qat.linear'
    """
    if getattr(mod, "qconfig", None) is None:
        return mod
    mod_type = type_before_observation(mod)
    if mod_type in custom_module_class_mapping:
        return custom_module_class_mapping[mod_type].from_observed(mod)
    if mod_type not in mapping:
        return mod
    qmod = resolve_module_class(mapping[mod_type], mod)
    if qmod is None:
        return mod
    if getattr(qmod, "_IS_REFERENCE", False):
        return qmod.from_float(mod, _weight_qparams(mod, qmod))
    try:
        parameters = inspect.signature(qmod.from_float).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        parameters = {}
    if "use_precomputed_fake_quant" in parameters:
        return qmod.from_float(mod, use_precomputed_fake_quant=use_precomputed_fake_quant)
    return qmod.from_float(mod)


def _swapped_as_unit(mod: Any, mapping: dict) -> bool:
    # torch does not descend into fused modules (its QAT fused modules are
    # _FusedModules too); jaxq's QAT modules own their children (bn,
    # weight_fake_quant) in the same way. Flax's recurrent cells and jaxq's float
    # multi-layer LSTM (quantizable.LSTM) keep their gate weights in child Linears where
    # torch's modules hold parameters: they convert as a whole. The cells always do; the
    # LSTM only where the mapping swaps it (dynamic: nnqd.LSTM), since the static / QAT
    # flows observe or fake-quantize its inner ops.
    from jaxq.nn import quantizable
    return (isinstance(mod, (_fused_module_class(), nnx.RNNCellBase))
            or hasattr(mod, "weight_fake_quant")
            or (isinstance(mod, quantizable.LSTM) and type_before_observation(mod) in mapping))


def _convert_children(module: nnx.Module, mapping: dict, custom_module_class_mapping: dict,
                      use_precomputed_fake_quant: bool) -> int:
    """Swaps the children of ``module`` (recursively); returns how many were swapped."""
    reassign = {}
    swapped = 0
    for name, mod in list(named_children(module)):
        if not _swapped_as_unit(mod, mapping) \
                and type_before_observation(mod) not in custom_module_class_mapping:
            swapped += _convert_children(mod, mapping, custom_module_class_mapping,
                                         use_precomputed_fake_quant)
        new_mod = swap_module(mod, mapping, custom_module_class_mapping,
                              use_precomputed_fake_quant)
        if new_mod is not mod:
            reassign[name] = new_mod
    for name, new_mod in reassign.items():
        set_child(module, name, new_mod)
    return swapped + len(reassign)


def _convert(module: nnx.Module, mapping: dict | None, is_reference: bool,
             convert_custom_config_dict: dict | None, use_precomputed_fake_quant: bool
             ) -> int:
    if mapping is None:
        mapping = (get_default_static_quant_reference_module_mappings() if is_reference
                   else get_default_static_quant_module_mappings())
    if not isinstance(mapping, dict):
        raise TypeError(f"mapping must be a dict {{float type: quantized type}}; got "
                        f"{type(mapping).__name__}")
    if convert_custom_config_dict is None:
        convert_custom_config_dict = get_default_custom_config_dict()
    custom_module_class_mapping = convert_custom_config_dict.get(
        "observed_to_quantized_custom_module_class", {})
    return _convert_children(module, mapping, custom_module_class_mapping,
                             use_precomputed_fake_quant)


def _is_dynamic_target(cls: Any) -> bool:
    module_name = getattr(cls, "__module__", "") or ""
    return ".dynamic" in module_name or getattr(cls, "__name__", "") in (
        "DeQuantize", "Embedding", "EmbeddingBag", "Dropout")


def _check_prepared(model: nnx.Module, mapping: dict | None, is_reference: bool) -> None:
    """Raises for a model that ``convert`` cannot have been meant for (never prepared)."""
    modules = [m for _, m in named_modules(model)]
    if not any(vars(m).get("qconfig") is not None for m in modules):
        raise ValueError("convert() got a model in which no submodule has a qconfig: it "
                         "was not prepared. Run prepare() and calibrate (or prepare_qat() "
                         "and train) first, or quantize_dynamic() for dynamic quantization")
    if any(is_activation_post_process(m) for m in modules):
        return
    if mapping is None:
        mapping = (get_default_static_quant_reference_module_mappings() if is_reference
                   else get_default_static_quant_module_mappings())
    for name, m in named_modules(model):
        if vars(m).get("qconfig") is None:
            continue
        target = resolve_module_class(mapping.get(type_before_observation(m)), m)
        if target is not None and not _is_dynamic_target(target):
            raise ValueError(f"convert() got a model that was not prepared: "
                             f"{name or 'the model'!r} ({type(m).__name__}) would become "
                             f"{target.__module__}.{target.__name__}, which needs the "
                             "observed output ranges, but the model has no observers. Run "
                             "prepare() and calibrate (or prepare_qat() and train) first")


def _remove_qconfig(module: nnx.Module) -> None:
    for _, child in list(named_children(module)):
        _remove_qconfig(child)
    if "qconfig" in vars(module):
        del module.qconfig
    remove_activation_post_process(module)


def convert(module: nnx.Module, mapping: dict | None = None, inplace: bool = False,
            remove_qconfig: bool = True, is_reference: bool = False,
            convert_custom_config_dict: dict | None = None,
            use_precomputed_fake_quant: bool = False) -> nnx.Module:
    """Swaps observed / QAT modules for quantized ones via ``from_float`` (torch's).

    Args:
      module: a prepared and calibrated (or QAT-trained) model.
      mapping: ``{float type: quantized type or ByRank}``; default the static mapping
        (the reference mapping when ``is_reference``).
      inplace: modify ``module`` (else a converted copy is returned).
      remove_qconfig: delete ``qconfig`` attributes and leftover observers afterwards.
      is_reference: use reference quantized modules.
      convert_custom_config_dict: ``{"observed_to_quantized_custom_module_class": ...}``.
      use_precomputed_fake_quant: passed to ``from_float`` when it accepts it.

    Raises:
      TypeError: ``module`` is not an ``nnx.Module``.
      ValueError: the model was never prepared (no qconfig; no observers where the
        quantized modules need output ranges; nothing to swap and no observers), or a
        module's ``from_float`` rejects it.
        The model is unchanged on error.
    """
    check_module(module, "module")
    _check_bool(inplace, "inplace")
    _check_bool(remove_qconfig, "remove_qconfig")
    _check_prepared(module, mapping, is_reference)

    def transform(work: nnx.Module) -> None:
        swapped = _convert(work, mapping, is_reference, convert_custom_config_dict,
                           use_precomputed_fake_quant)
        if swapped == 0 and not any(is_activation_post_process(m)
                                    for _, m in named_modules(work)):
            raise ValueError("convert() got a model that was not prepared: no submodule "
                             "has an observer or a quantized counterpart with a qconfig (a "
                             "qconfig set on a parent is only propagated by prepare()). Run "
                             "prepare() and calibrate (or prepare_qat() and train) first")
        if remove_qconfig:
            _remove_qconfig(work)

    return _apply(module, inplace, transform)
