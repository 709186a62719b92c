"""QConfig and torch's default qconfigs (``torch.ao.quantization.qconfig``).

A :class:`QConfig` is a named tuple ``(activation, weight)`` of observer or fake-quantize
*constructors* (classes or ``Class.with_args(...)`` factories), never instances: each layer
builds its own. Every default of torch's ``qconfig.py`` is here with torch's observers and
arguments; dtypes are jaxq's (``jaxq.qint8``, ``jaxq.float16``, ...).

Example:
  >>> import jaxq
  >>> from jaxq.qconfig import get_default_qconfig
  >>> qconfig = get_default_qconfig("x86")
  >>> activation = qconfig.activation()
  >>> type(activation).__name__, activation.reduce_range
  ('HistogramObserver', True)
"""

from __future__ import annotations

import copy
import warnings
from collections import namedtuple
from typing import Any

from flax import nnx

from jaxq.core import dtypes
from jaxq.fake_quantize import (
    FakeQuantize,
    FakeQuantizeBase,
    FusedMovingAvgObsFakeQuantize,
    default_dynamic_fake_quant,
    default_embedding_fake_quant,
    default_embedding_fake_quant_4bit,
    default_fake_quant,
    default_fused_act_fake_quant,
    default_fused_per_channel_wt_fake_quant,
    default_fused_wt_fake_quant,
    default_per_channel_weight_fake_quant,
    default_weight_fake_quant,
    fused_per_channel_wt_fake_quant_range_neg_127_to_127,
    fused_wt_fake_quant_range_neg_127_to_127,
)
from jaxq.observer import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    NoopObserver,
    PerChannelMinMaxObserver,
    PlaceholderObserver,
    ReuseInputObserver,
    _PartialWrapper,
    default_debug_observer,
    default_dynamic_quant_observer,
    default_float_qparams_observer,
    default_float_qparams_observer_4bit,
    default_observer,
    default_per_channel_weight_observer,
    default_placeholder_observer,
    default_reuse_input_observer,
    default_weight_observer,
    per_channel_weight_observer_range_neg_127_to_127,
    weight_observer_range_neg_127_to_127,
)

__all__ = [
    "QConfig",
    "QConfigDynamic",
    "Identity",
    "default_qconfig",
    "default_debug_qconfig",
    "default_per_channel_qconfig",
    "default_dynamic_qconfig",
    "float16_dynamic_qconfig",
    "float16_static_qconfig",
    "per_channel_dynamic_qconfig",
    "float_qparams_weight_only_qconfig",
    "float_qparams_weight_only_qconfig_4bit",
    "default_quint8_weight_qconfig",
    "default_qat_qconfig",
    "default_dynamic_qat_qconfig",
    "default_weight_only_qconfig",
    "default_activation_only_qconfig",
    "default_qat_qconfig_v2",
    "default_reuse_input_qconfig",
    "default_symmetric_qnnpack_qconfig",
    "default_per_channel_symmetric_qnnpack_qconfig",
    "default_symmetric_qnnpack_qat_qconfig",
    "default_per_channel_symmetric_qnnpack_qat_qconfig",
    "default_embedding_qat_qconfig",
    "default_embedding_qat_qconfig_4bit",
    "get_default_qconfig",
    "get_default_qat_qconfig",
    "get_default_qconfig_dict",
    "get_default_qat_qconfig_dict",
    "QConfigAny",
    "qconfig_equals",
]

_SUPPORTED_BACKENDS = ["fbgemm", "x86", "qnnpack", "onednn"]


class Identity(nnx.Module):
    """A module that returns its input: jaxq's ``torch.nn.Identity`` for qconfigs.

    torch's ``default_weight_only_qconfig`` and ``default_activation_only_qconfig`` use
    ``torch.nn.Identity`` as the constructor of the part that is not quantized.
    """

    def __call__(self, x: Any) -> Any:
        return x


def _check_constructor(value: Any, argument: str, owner: str) -> None:
    if isinstance(value, nnx.Module):
        raise ValueError(
            f"{owner} received observer instance, please pass observer class instead. "
            "Use MyObserver.with_args(x=1) to override arguments to constructor if needed "
            f"({argument}={type(value).__name__} instance)")
    if value is not None and not callable(value):
        raise TypeError(f"{argument}={value!r} must be None or an observer / fake-quantize "
                        "constructor (a class or Class.with_args(...))")


class QConfig(namedtuple("QConfig", ["activation", "weight"])):
    """How to quantize a layer: constructors for its activation and weight observers.

    Args:
      activation: constructor of the activation observer / fake-quantize (or None).
      weight: constructor of the weight observer / fake-quantize (or None).

    Raises:
      ValueError: when given an observer instance instead of a constructor (as torch).
      TypeError: naming the argument, when it is neither None nor callable.
    """

    __slots__ = ()

    def __new__(cls, activation, weight):
        _check_constructor(activation, "activation", "QConfig")
        _check_constructor(weight, "weight", "QConfig")
        return super().__new__(cls, activation, weight)


class QConfigDynamic(namedtuple("QConfigDynamic", ["activation", "weight"])):
    """Deprecated in torch (use :class:`QConfig`); kept for its name.

    Constructing one emits a FutureWarning, as torch does.
    """

    __slots__ = ()

    def __new__(cls, activation=Identity, weight=Identity):
        warnings.warn("`QConfigDynamic` is going to be deprecated in PyTorch 1.12, please use "
                      "`QConfig` instead", FutureWarning, stacklevel=2)
        if isinstance(weight, nnx.Module):
            raise ValueError(
                "QConfigDynamic received observer instance, please pass observer class "
                "instead. Use MyObserver.with_args(x=1) to override arguments to constructor "
                "if needed")
        return super().__new__(cls, activation, weight)


QConfigAny = QConfig | None

default_qconfig = QConfig(activation=default_observer, weight=default_weight_observer)
"""Default qconfig configuration."""

default_debug_qconfig = QConfig(weight=default_weight_observer,
                                activation=default_debug_observer)
"""Default qconfig configuration for debugging."""

default_per_channel_qconfig = QConfig(activation=default_observer,
                                      weight=default_per_channel_weight_observer)
"""Default qconfig configuration for per channel weight quantization."""

default_dynamic_qconfig = QConfig(activation=default_dynamic_quant_observer,
                                  weight=default_weight_observer)
"""Default dynamic qconfig."""

float16_dynamic_qconfig = QConfig(
    activation=PlaceholderObserver.with_args(dtype=dtypes.float16, is_dynamic=True),
    weight=PlaceholderObserver.with_args(dtype=dtypes.float16))
"""Dynamic qconfig with weights quantized to float16."""

float16_static_qconfig = QConfig(
    activation=PlaceholderObserver.with_args(dtype=dtypes.float16),
    weight=PlaceholderObserver.with_args(dtype=dtypes.float16))
"""Qconfig with both activations and weights quantized to float16."""

per_channel_dynamic_qconfig = QConfig(activation=default_dynamic_quant_observer,
                                      weight=default_per_channel_weight_observer)
"""Dynamic qconfig with weights quantized per channel."""

float_qparams_weight_only_qconfig = QConfig(activation=default_placeholder_observer,
                                            weight=default_float_qparams_observer)
"""Weight-only qconfig with a floating-point zero_point (embeddings)."""

float_qparams_weight_only_qconfig_4bit = QConfig(activation=default_placeholder_observer,
                                                 weight=default_float_qparams_observer_4bit)
"""4-bit weight-only qconfig with a floating-point zero_point (embeddings)."""

default_qat_qconfig = QConfig(activation=default_fake_quant, weight=default_weight_fake_quant)
"""Default qconfig for QAT."""

default_dynamic_qat_qconfig = QConfig(activation=default_dynamic_fake_quant,
                                      weight=default_weight_fake_quant)
"""Default qconfig for dynamic QAT."""

default_weight_only_qconfig = QConfig(activation=Identity, weight=default_weight_fake_quant)
"""Default qconfig for quantizing weights only."""

default_activation_only_qconfig = QConfig(activation=default_fake_quant, weight=Identity)
"""Default qconfig for quantizing activations only."""

default_qat_qconfig_v2 = QConfig(activation=default_fused_act_fake_quant,
                                 weight=default_fused_wt_fake_quant)
"""Fused version of ``default_qat_qconfig``: fused observer + fake-quant modules."""

default_reuse_input_qconfig = QConfig(activation=default_reuse_input_observer,
                                      weight=NoopObserver)
"""Default qconfig for operators that reuse their input's observer, e.g. reshape."""


def _is_vnni_supported() -> bool:
    """Whether the host CPU has VNNI (torch.cpu._is_vnni_supported), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx" in flags


def _check_backend(backend: Any) -> None:
    if backend not in _SUPPORTED_BACKENDS:
        raise ValueError(f"backend: {backend} not supported. backend must be one of "
                         f"{_SUPPORTED_BACKENDS} (backend={backend!r})")


def get_default_qconfig(backend: str = "x86", version: int = 0) -> QConfig:
    """The default post-training-quantization qconfig for ``backend`` (torch's choices).

    x86 and fbgemm: HistogramObserver(reduce_range=True) x per-channel symmetric qint8
    weights; qnnpack: HistogramObserver(reduce_range=False) x per-tensor weights; onednn:
    HistogramObserver(reduce_range=False) x per-channel weights (with torch's warning when
    the CPU lacks VNNI).

    Args:
      backend: ``"x86"`` (default), ``"fbgemm"``, ``"qnnpack"`` or ``"onednn"``.
      version: 0, the only version.

    Raises:
      ValueError: naming ``backend`` or ``version`` and the accepted values (torch raises
        AssertionError).
    """
    _check_backend(backend)
    if version != 0 or isinstance(version, bool):
        raise ValueError(f"version={version!r} in get_default_qconfig is not supported; "
                         "accepted: 0")
    if backend == "fbgemm":
        return QConfig(activation=HistogramObserver.with_args(reduce_range=True),
                       weight=default_per_channel_weight_observer)
    if backend == "qnnpack":
        return QConfig(activation=HistogramObserver.with_args(reduce_range=False),
                       weight=default_weight_observer)
    if backend == "onednn":
        if not _is_vnni_supported():
            warnings.warn("Default qconfig of oneDNN backend with reduce_range of false may "
                          "have accuracy issues on CPU without Vector Neural Network "
                          "Instruction support.", stacklevel=2)
        return QConfig(activation=HistogramObserver.with_args(reduce_range=False),
                       weight=default_per_channel_weight_observer)
    return QConfig(activation=HistogramObserver.with_args(reduce_range=True),
                   weight=default_per_channel_weight_observer)


default_symmetric_qnnpack_qconfig = QConfig(
    activation=HistogramObserver.with_args(dtype=dtypes.qint8, reduce_range=False, eps=2**-12),
    weight=weight_observer_range_neg_127_to_127)
"""Symmetric qint8 PTQ qconfig for qnnpack/xnnpack (weights in [-127, 127])."""

default_per_channel_symmetric_qnnpack_qconfig = QConfig(
    activation=HistogramObserver.with_args(dtype=dtypes.qint8, reduce_range=False, eps=2**-12),
    weight=per_channel_weight_observer_range_neg_127_to_127)
"""Per-channel variant of ``default_symmetric_qnnpack_qconfig``."""

default_embedding_qat_qconfig = QConfig(activation=NoopObserver.with_args(dtype=dtypes.float32),
                                        weight=default_embedding_fake_quant)
"""QAT qconfig for embeddings (8-bit float-qparams weights)."""

default_embedding_qat_qconfig_4bit = QConfig(
    activation=NoopObserver.with_args(dtype=dtypes.float32),
    weight=default_embedding_fake_quant_4bit)
"""QAT qconfig for embeddings (4-bit float-qparams weights)."""

default_quint8_weight_qconfig = QConfig(activation=HistogramObserver, weight=MinMaxObserver)
"""Qconfig with quint8 weights (used for PReLU)."""


def get_default_qat_qconfig(backend: str = "x86", version: int = 1) -> QConfig:
    """The default quantization-aware-training qconfig for ``backend`` (torch's choices).

    version 0: FakeQuantize over MovingAverageMinMaxObserver (quant range 0..255,
    reduce_range True for x86/fbgemm, False for qnnpack, default for onednn); version 1
    (default): the same with FusedMovingAvgObsFakeQuantize and fused weight fake-quants.

    Raises:
      ValueError: naming ``backend`` or ``version`` and the accepted values.
    """
    _check_backend(backend)
    if isinstance(version, bool) or version not in (0, 1):
        raise ValueError(f"version={version!r} in get_default_qat_qconfig is not supported; "
                         "accepted: 0, 1")
    if version == 0:
        fake_quant, per_channel_weight, per_tensor_weight = (
            FakeQuantize, default_per_channel_weight_fake_quant, default_weight_fake_quant)
    else:
        fake_quant, per_channel_weight, per_tensor_weight = (
            FusedMovingAvgObsFakeQuantize, default_fused_per_channel_wt_fake_quant,
            default_fused_wt_fake_quant)
    if backend in ("fbgemm", "x86"):
        return QConfig(activation=fake_quant.with_args(
            observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
            reduce_range=True), weight=per_channel_weight)
    if backend == "qnnpack":
        return QConfig(activation=fake_quant.with_args(
            observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
            reduce_range=False), weight=per_tensor_weight)
    return QConfig(activation=fake_quant.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255),
        weight=per_channel_weight)


default_symmetric_qnnpack_qat_qconfig = QConfig(
    activation=FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127,
        dtype=dtypes.qint8, reduce_range=False, eps=2**-12),
    weight=fused_wt_fake_quant_range_neg_127_to_127)
"""Symmetric qint8 QAT qconfig for qnnpack."""

default_per_channel_symmetric_qnnpack_qat_qconfig = QConfig(
    activation=FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127,
        dtype=dtypes.qint8, reduce_range=False, eps=2**-12),
    weight=fused_per_channel_wt_fake_quant_range_neg_127_to_127)
"""Per-channel variant of ``default_symmetric_qnnpack_qat_qconfig``."""

_default_fp32_placeholder_qconfig = QConfig(
    activation=PlaceholderObserver.with_args(dtype=dtypes.float32),
    weight=PlaceholderObserver.with_args(dtype=dtypes.float32))

_default_quint8_placeholder_qconfig = QConfig(
    activation=PlaceholderObserver.with_args(dtype=dtypes.quint8),
    # Operators using this qconfig have no weights.
    weight=None)


def get_default_qconfig_dict(backend: str = "x86", version: int = 0) -> dict[str, Any]:
    """Deprecated (as in torch): ``get_default_qconfig_mapping(backend, version).to_dict()``."""
    warnings.warn("`jaxq.get_default_qconfig_dict` is deprecated and will be removed in a "
                  "future version. Please use `jaxq.get_default_qconfig_mapping` instead.",
                  FutureWarning, stacklevel=2)
    from jaxq.qconfig_mapping import get_default_qconfig_mapping
    return get_default_qconfig_mapping(backend, version).to_dict()


def get_default_qat_qconfig_dict(backend: str = "x86", version: int = 1) -> dict[str, Any]:
    """Deprecated (as in torch): ``get_default_qat_qconfig_mapping(...).to_dict()``."""
    warnings.warn("`jaxq.get_default_qat_qconfig_dict` is deprecated and will be removed in "
                  "a future version. Please use `jaxq.get_default_qat_qconfig_mapping` "
                  "instead.", FutureWarning, stacklevel=2)
    from jaxq.qconfig_mapping import get_default_qat_qconfig_mapping
    return get_default_qat_qconfig_mapping(backend, version).to_dict()


def _assert_valid_qconfig(qconfig: QConfig | None, mod: Any) -> None:
    """torch's check: transposed convolutions take no per-channel weight observer.

    Raises:
      ValueError: for a per-channel weight observer on ``nnx.ConvTranspose`` (torch raises
        AssertionError).
    """
    if qconfig is None or not isinstance(mod, nnx.ConvTranspose) or qconfig.weight is None:
        return
    example_observer = qconfig.weight()
    if isinstance(example_observer, (PerChannelMinMaxObserver,
                                     MovingAveragePerChannelMinMaxObserver)):
        raise ValueError("Per channel weight observer is not supported yet for "
                         "ConvTranspose{n}d.")


def _obs_or_fq_ctr_equals(obs_or_fq1: Any, obs_or_fq2: Any) -> bool:
    if isinstance(obs_or_fq1, _PartialWrapper) and isinstance(obs_or_fq2, _PartialWrapper):
        return _partial_wrapper_equals(obs_or_fq1, obs_or_fq2)
    return obs_or_fq1 == obs_or_fq2


def _partial_wrapper_equals(obs_or_fq1: _PartialWrapper, obs_or_fq2: _PartialWrapper) -> bool:
    """Whether two factories build the same thing (functools.partial has no __eq__)."""
    keywords1 = copy.copy(obs_or_fq1.p.keywords)
    keywords2 = copy.copy(obs_or_fq2.p.keywords)
    keywords_equal = True
    # Nested observer constructors compare with this same rule.
    if "observer" in keywords1 and "observer" in keywords2:
        keywords_equal = _obs_or_fq_ctr_equals(keywords1.pop("observer"),
                                               keywords2.pop("observer"))
    keywords_equal = keywords_equal and keywords1 == keywords2
    return (obs_or_fq1.p.func == obs_or_fq2.p.func
            and obs_or_fq1.p.args == obs_or_fq2.p.args and keywords_equal)


def qconfig_equals(q1: Any, q2: Any) -> bool:
    """Whether two QConfigs build the same observers (compares bound constructor args)."""
    if q1 is None or q2 is None:
        return q1 == q2
    try:
        return (_obs_or_fq_ctr_equals(q1.activation, q2.activation)
                and _obs_or_fq_ctr_equals(q1.weight, q2.weight))
    except AttributeError:
        return q1 == q2


def _activation_is_memoryless(qconfig: QConfig) -> bool:
    """Whether the activation observer is a moving average with averaging_constant 1."""

    def _is_memoryless(observer):
        return getattr(observer, "averaging_constant", None) == 1

    act = qconfig.activation()
    if isinstance(act, FakeQuantizeBase) and hasattr(act, "activation_post_process"):
        return _is_memoryless(act.activation_post_process)
    return _is_memoryless(act)


def _is_reuse_input_qconfig(qconfig: QConfig | None) -> bool:
    return (qconfig is not None and isinstance(qconfig.activation(), ReuseInputObserver)
            and isinstance(qconfig.weight(), NoopObserver))
