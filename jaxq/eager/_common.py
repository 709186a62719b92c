"""Shared helpers of the eager workflow: copy-then-mutate, mode and argument checks.

Split out of :mod:`jaxq.eager.quantize`; see its docs for how torch's module machinery
maps onto NNX and for the ``inplace`` atomicity rule that :func:`_apply` implements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from jaxq.eager._tree import copy_model, named_children, named_modules


_DEFAULT_CUSTOM_CONFIG_DICT: dict[str, dict] = {
    # torch: nn.LSTM / nn.MultiheadAttention -> their quantizable forms -> quantized ones.
    # jaxq's float LSTM / MHA are the quantizable classes themselves (Flax has no
    # torch-style multi-layer LSTM or MHA); their from_float copies and prepares them.
    # Filled on first use (jaxq.nn.quantizable imports jaxq.eager).
    "float_to_observed_custom_module_class": {},
    "observed_to_quantized_custom_module_class": {},
}


def get_default_custom_config_dict() -> dict[str, dict]:
    """torch's default custom config dict: ``quantizable.LSTM`` /
    ``quantizable.MultiheadAttention`` (jaxq's float forms) to themselves (observed by
    ``from_float``), and those to ``jaxq.nn.quantized.LSTM`` / ``MultiheadAttention``."""
    if not _DEFAULT_CUSTOM_CONFIG_DICT["float_to_observed_custom_module_class"]:
        from jaxq.nn import quantizable as nnqa
        from jaxq.nn import quantized as nnq
        _DEFAULT_CUSTOM_CONFIG_DICT["float_to_observed_custom_module_class"].update({
            nnqa.LSTM: nnqa.LSTM, nnqa.MultiheadAttention: nnqa.MultiheadAttention})
        _DEFAULT_CUSTOM_CONFIG_DICT["observed_to_quantized_custom_module_class"].update({
            nnqa.LSTM: nnq.LSTM, nnqa.MultiheadAttention: nnq.MultiheadAttention})
    return _DEFAULT_CUSTOM_CONFIG_DICT


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
