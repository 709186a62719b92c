"""``torch.ao.quantization.quantize``: the eager workflow on NNX module trees.

``propagate_qconfig_`` -> ``prepare`` -> calibrate -> ``convert`` (post-training static),
``prepare_qat`` -> train -> ``convert`` (QAT), ``quantize_dynamic``, and the one-call
``quantize`` / ``quantize_qat``. Same arguments and defaults as torch.

The workflow is split by concept: :mod:`jaxq.eager.propagate` (``propagate_qconfig_``),
:mod:`jaxq.eager.preparation` (``prepare``, ``prepare_qat``, ``add_quant_dequant``),
:mod:`jaxq.eager.conversion` (``convert``, ``swap_module``) and this module (the one-call
workflows); every name stays importable from here.

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

from collections.abc import Callable, Iterable
from typing import Any

from flax import nnx

from jaxq.core import dtypes
from jaxq.eager._common import (  # noqa: F401  (re-exported)
    _DEFAULT_CUSTOM_CONFIG_DICT,
    _apply,
    _check_bool,
    _functional_classes,
    _fused_module_class,
    _has_children,
    _is_training,
    get_default_custom_config_dict,
)
from jaxq.eager._tree import check_module, copy_model, named_children
from jaxq.eager.conversion import (  # noqa: F401  (re-exported)
    _check_prepared,
    _convert,
    _convert_children,
    _is_dynamic_target,
    _remove_qconfig,
    _swapped_as_unit,
    _weight_qparams,
    convert,
    swap_module,
)
from jaxq.eager.preparation import (  # noqa: F401  (re-exported)
    _add_observer_,
    _is_memoryless,
    _prepare,
    add_quant_dequant,
    prepare,
    prepare_qat,
)
from jaxq.eager.propagate import (  # noqa: F401  (re-exported)
    _FX_STYLE_KEYS,
    _check_qconfig_value,
    _normalize_qconfig_dict,
    _propagate,
    _propagate_qconfig_helper,
    propagate_qconfig_,
)
from jaxq.quantization_mappings import (
    get_default_dynamic_quant_module_mappings,
    get_default_static_quant_module_mappings,
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
            from jaxq.nn import quantizable
            types = [nnx.Linear, nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell,
                     nnx.SimpleCell, quantizable.LSTM]
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
        ``nnx.Linear``, RNN cell and ``jaxq.nn.quantizable.LSTM`` (jaxq's float
        ``nn.LSTM``) for qint8/float16, ``nnx.Embed`` for quint8.
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
        # No observed custom modules in dynamic quantization: without this, the default
        # custom config would send jaxq.nn.quantizable.LSTM (which is also jaxq's float
        # LSTM) to the static nnq.LSTM instead of the mapping's nnqd.LSTM.
        _convert(work, mapping, False, {"observed_to_quantized_custom_module_class": {}},
                 False)
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
