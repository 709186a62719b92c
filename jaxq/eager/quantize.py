"""``torch.ao.quantization.quantize``: the eager workflow on NNX module trees.

``propagate_qconfig_`` -> ``prepare`` -> calibrate -> ``convert`` (post-training static),
``prepare_qat`` -> train -> ``convert`` (QAT), ``quantize_dynamic``, and the one-call
``quantize`` / ``quantize_qat``. Same arguments and defaults as torch.

How torch's module machinery maps onto NNX:

* Qconfigs attach as attributes (``module.qconfig = qconfig``), as in torch.
* Children are the ``nnx.Module`` attributes of a module (``nnx.List`` / ``nnx.Dict`` /
  ``nnx.Sequential`` entries are children named ``"0"``, ``"1"``...); names are
  dotted attribute paths (see :mod:`jaxq.eager._tree`).
* torch's observer forward hooks are ``Observed<Cls>`` subclasses
  (:mod:`jaxq.eager.hooks`); graphdefs stay stable, so ``nnx.jit`` compiles once.
* torch's ``module.training`` is Flax's mode: a model is in training mode unless a
  submodule has ``use_running_average=True`` or ``deterministic=True``
  (``model.eval()`` sets both). ``prepare_qat`` requires training mode.
* Flax's ``nnx.Conv`` is rank-agnostic; mappings hold a
  :class:`~jaxq.backend_config.type_names.ByRank` value for it.

Atomicity: ``inplace=False`` works on a copy (``nnx.clone``). ``inplace=True`` first
runs the transformation on a copy and only then on the model itself, so an error (no
qconfig anywhere, an unsupported module, converting a model that was never prepared,
a bad observer constructor) leaves the model exactly as it was, while a success mutates
it in place as torch does. ``quantize``/``quantize_qat`` apply this to each step around
``run_fn``.

Deviations from torch: ``prepare``/``prepare_qat`` raise ValueError when no submodule has
a qconfig (torch only warns); ``convert`` raises ValueError for a model that has no
qconfig or no observers at all (torch silently returns it unchanged); assertion
failures are ValueError/TypeError; torch's device checks have no JAX counterpart.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import jaxq
  >>> from jaxq.eager import QuantStub, DeQuantStub, prepare, convert
  >>> class Net(nnx.Module):
  ...     def __init__(self):
  ...         self.quant = QuantStub()
  ...         self.fc = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
  ...         self.dequant = DeQuantStub()
  ...     def __call__(self, x):
  ...         return self.dequant(self.fc(self.quant(x)))
  >>> net = Net()
  >>> net.qconfig = jaxq.qconfig.get_default_qconfig("x86")
  >>> prepared = prepare(net)
  >>> type(prepared.fc).__name__
  'ObservedLinear'
  >>> _ = prepared(jnp.linspace(-1, 1, 8).reshape(2, 4))
  >>> quantized = convert(prepared)
  >>> type(quantized.fc).__name__, quantized(jnp.ones((2, 4))).shape
  ('Linear', (2, 3))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from flax import nnx

from jaxq.core import dtypes
from jaxq.eager._tree import (
    check_module,
    copy_model,
    named_children,
    named_modules,
    set_child,
)
from jaxq.eager.hooks import (
    add_activation_post_process,
    is_activation_post_process,
    remove_activation_post_process,
    type_before_observation,
)
from jaxq.eager.stubs import DeQuantStub, QuantWrapper
from jaxq.quantization_mappings import (
    _get_special_act_post_process,
    _has_special_act_post_process,
    get_default_dynamic_quant_module_mappings,
    get_default_qat_module_mappings,
    get_default_qconfig_propagation_list,
    get_default_static_quant_module_mappings,
    get_default_static_quant_reference_module_mappings,
    mapping_classes,
    no_observer_set,
    resolve_module_class,
)

__all__ = [
    "get_default_custom_config_dict",
    "propagate_qconfig_",
    "add_quant_dequant",
    "prepare",
    "quantize",
    "quantize_dynamic",
    "prepare_qat",
    "quantize_qat",
    "convert",
    "swap_module",
    "default_eval_fn",
]

_DEFAULT_CUSTOM_CONFIG_DICT: dict[str, dict] = {
    # torch maps nn.LSTM / nn.MultiheadAttention to their quantizable forms; Flax has
    # neither module, so jaxq's defaults are empty.
    "float_to_observed_custom_module_class": {},
    "observed_to_quantized_custom_module_class": {},
}

_FX_STYLE_KEYS = ("object_type", "module_name_regex", "module_name",
                  "module_name_object_type_order")


def get_default_custom_config_dict() -> dict[str, dict]:
    """The default custom config dict (empty class mappings; see module docs)."""
    return _DEFAULT_CUSTOM_CONFIG_DICT


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

def _fused_module_class() -> type:
    from jaxq.nn.intrinsic.fused import _FusedModule
    return _FusedModule


def _functional_classes() -> tuple[type, ...]:
    classes = []
    try:
        from jaxq.nn import quantized as nnq
    except ImportError:  # pragma: no cover - the quantized package is always present
        return ()
    for name in ("FloatFunctional", "QFunctional", "FXFloatFunctional"):
        cls = getattr(nnq, name, None)
        if isinstance(cls, type):
            classes.append(cls)
    return tuple(classes)


def _has_children(module: nnx.Module) -> bool:
    return next(named_children(module), None) is not None


def _is_training(model: nnx.Module) -> bool:
    """torch's ``model.training`` for a Flax model (see module docs)."""
    for _, module in named_modules(model):
        attributes = vars(module)
        if attributes.get("use_running_average") is True \
                or attributes.get("deterministic") is True:
            return False
    return True


def _apply(model: nnx.Module, inplace: bool, transform: Callable[[nnx.Module], Any]
           ) -> nnx.Module:
    """Runs ``transform`` (an in-place edit) on a copy, or validated in place.

    ``inplace=False``: on a copy, which is returned. ``inplace=True``: first on a copy, so
    that any error surfaces before ``model`` is touched, then on ``model`` itself (torch's
    in-place semantics: references to submodules see the change).
    """
    work = copy_model(model)
    transform(work)
    if not inplace:
        return work
    transform(model)
    return model


def _check_bool(value: Any, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{argument}={value!r} must be a bool")
    return value


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


# --------------------------------------------------------------------------------------
# propagate_qconfig_
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------

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
        _convert(work, mapping, is_reference=False, convert_custom_config_dict=None,
                 use_precomputed_fake_quant=False)
        _prepare(work, None, mapping_classes(mapping.values()), None)

    return _apply(model, inplace, transform)


# --------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------

def _weight_qparams(mod: Any) -> dict[str, Any]:
    """torch's ``get_qparam_dict`` of the weight observer, for reference modules."""
    from jaxq.nn.layout import weight_observer_for_kernel
    kernel = mod.kernel.get_value()
    observer = weight_observer_for_kernel(mod.qconfig.weight, kernel)
    observer(kernel)
    scale, zero_point = observer.calculate_qparams()
    qparams = {"qscheme": getattr(observer, "qscheme", None),
               "dtype": getattr(observer, "dtype", None),
               "scale": scale, "zero_point": zero_point}
    if getattr(observer, "ch_axis", None) is not None and qparams["qscheme"] is not None \
            and qparams["qscheme"].is_per_channel:
        qparams["axis"] = getattr(observer, "torch_ch_axis", observer.ch_axis)
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
        return qmod.from_float(mod, _weight_qparams(mod))
    try:
        parameters = inspect.signature(qmod.from_float).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        parameters = {}
    if "use_precomputed_fake_quant" in parameters:
        return qmod.from_float(mod, use_precomputed_fake_quant=use_precomputed_fake_quant)
    return qmod.from_float(mod)


def _swapped_as_unit(mod: Any) -> bool:
    # torch does not descend into fused modules (its QAT fused modules are
    # _FusedModules too); jaxq's QAT modules own their children (bn,
    # weight_fake_quant) in the same way.
    return isinstance(mod, _fused_module_class()) or hasattr(mod, "weight_fake_quant")


def _convert_children(module: nnx.Module, mapping: dict, custom_module_class_mapping: dict,
                      use_precomputed_fake_quant: bool) -> int:
    """Swaps the children of ``module`` (recursively); returns how many were swapped."""
    reassign = {}
    swapped = 0
    for name, mod in list(named_children(module)):
        if not _swapped_as_unit(mod) \
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


# --------------------------------------------------------------------------------------
# One-call workflows
# --------------------------------------------------------------------------------------

def quantize(model: nnx.Module, run_fn: Callable, run_args: Any, mapping: dict | None = None,
             inplace: bool = False) -> nnx.Module:
    """Post-training static quantization: eval -> prepare -> ``run_fn(model, *run_args)``
    -> convert (torch's ``quantize``)."""
    check_module(model)
    _check_bool(inplace, "inplace")
    if not callable(run_fn):
        raise TypeError(f"run_fn={run_fn!r} must be callable as run_fn(model, *run_args)")
    if mapping is None:
        mapping = get_default_static_quant_module_mappings()
    if not inplace:
        model = copy_model(model)
    model.eval()
    prepare(model, inplace=True)
    run_fn(model, *run_args)
    convert(model, mapping, inplace=True)
    return model


def _dynamic_qconfig_spec(qconfig_spec: Any, dtype: Any) -> dict[Any, Any]:
    from jaxq.qconfig import (
        default_dynamic_qconfig,
        float16_dynamic_qconfig,
        float_qparams_weight_only_qconfig,
    )
    try:
        quant_dtype = dtypes.as_quant_dtype(dtype)
    except (TypeError, ValueError):
        quant_dtype = None
    defaults = {dtypes.qint8: default_dynamic_qconfig,
                dtypes.float16: float16_dynamic_qconfig,
                dtypes.quint8: float_qparams_weight_only_qconfig}
    if quant_dtype not in defaults:
        if quant_dtype == dtypes.quint4x2:
            raise ValueError("dtype=quint4x2 dynamic quantization applies to torch's "
                             "EmbeddingBag, which Flax does not have; pass a qconfig_spec")
        raise ValueError(f"Don't know how to quantize with default settings for "
                         f"dtype={dtype!r}. Provide full qconfig please (accepted: "
                         "jaxq.qint8, jaxq.float16, jaxq.quint8)")
    default_qconfig = defaults[quant_dtype]
    if qconfig_spec is None:
        if quant_dtype == dtypes.quint8:
            types = [nnx.Embed]
        else:
            types = [nnx.Linear, nnx.LSTMCell, nnx.GRUCell, nnx.SimpleCell]
        return {t: default_qconfig for t in types}
    if isinstance(qconfig_spec, (set, frozenset)):
        return {key: default_qconfig for key in qconfig_spec}
    return qconfig_spec


def quantize_dynamic(model: nnx.Module, qconfig_spec: Any = None, dtype: Any = dtypes.qint8,
                     mapping: dict | None = None, inplace: bool = False) -> nnx.Module:
    """Dynamic (weight-quantized, activations quantized on the fly) quantization.

    Args:
      model: the float model.
      qconfig_spec: ``{name or type: QConfig}`` (or a QConfigMapping), or a set of
        names/types quantized with ``dtype``'s default qconfig; default: every
        ``nnx.Linear`` (and RNN cell) for qint8/float16, ``nnx.Embed`` for quint8.
      dtype: ``jaxq.qint8`` (default), ``jaxq.float16`` or ``jaxq.quint8``.
      mapping: ``{float type: dynamic quantized type}``; default the dynamic mapping.
      inplace: modify ``model`` (else a quantized copy is returned).

    Raises:
      ValueError: an unsupported ``dtype``. The model is unchanged on error.
    """
    check_module(model)
    _check_bool(inplace, "inplace")
    qconfig_spec = _dynamic_qconfig_spec(qconfig_spec, dtype)
    if mapping is None:
        mapping = get_default_dynamic_quant_module_mappings()

    def transform(work: nnx.Module) -> None:
        work.eval()
        _propagate(work, qconfig_spec)
        _convert(work, mapping, False, None, False)
        _remove_qconfig(work)

    return _apply(model, inplace, transform)


def quantize_qat(model: nnx.Module, run_fn: Callable, run_args: Any, inplace: bool = False
                 ) -> nnx.Module:
    """QAT in one call: train mode -> prepare_qat -> ``run_fn(model, *run_args)`` ->
    convert (torch's ``quantize_qat``)."""
    check_module(model)
    _check_bool(inplace, "inplace")
    if not callable(run_fn):
        raise TypeError(f"run_fn={run_fn!r} must be callable as run_fn(model, *run_args)")
    if not inplace:
        model = copy_model(model)
    model.train()
    prepare_qat(model, inplace=True)
    run_fn(model, *run_args)
    convert(model, inplace=True)
    return model


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


def default_eval_fn(model: Callable, calib_data: Iterable) -> None:
    """Runs ``model(data)`` for every ``(data, target)`` of ``calib_data`` (torch's)."""
    for data, _target in calib_data:
        model(data)


def _get_observer_dict(mod: nnx.Module, target_dict: dict, prefix: str = "") -> None:
    """Collects every ``activation_post_process`` by dotted name (torch's debug helper)."""
    def get_prefix(p: str) -> str:
        return p if p == "" else p + "."

    if hasattr(mod, "activation_post_process"):
        target_dict[get_prefix(prefix) + "activation_post_process"] = (
            mod.activation_post_process)
    for name, child in named_children(mod):
        module_prefix = get_prefix(prefix) + name if prefix else name
        _get_observer_dict(child, target_dict, module_prefix)
