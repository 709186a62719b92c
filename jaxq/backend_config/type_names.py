"""The one table that translates torch object names into jaxq / Flax / JAX objects.

torch's configuration objects (QConfigMapping object types, BackendConfig patterns, custom
configs) name torch modules, functionals, torch ops and Tensor method names. jaxq's name the
Flax NNX modules, JAX functions and ``jax.Array`` methods that play the same role. This module
holds the translation, in one place, so the default backend config, the default qconfig
mapping and the PyTorch-interop converter all agree.

Conventions of :data:`TORCH_TO_JAXQ`:

* Keys are the names torch users write: a dotted public path (``"torch.nn.Conv2d"``,
  ``"torch.nn.functional.relu"``, ``"operator.add"``) or, without a dot, a Tensor method name
  as torch's configs use it (``"reshape"``).
* Values are :class:`Translation` tuples. ``target`` is a dotted import path of the jaxq /
  Flax / JAX object (``"flax.nnx.Conv"``), or ``".name"`` for a ``jax.Array`` method, or
  ``None`` when jaxq has no equivalent (``note`` says why). ``rank`` is the number of spatial
  dimensions torch bakes into the name (``Conv2d`` -> 2) where the jaxq target is
  rank-agnostic (``nnx.Conv``).
* Flax expresses activations as functions, so torch's activation *modules*
  (``torch.nn.ReLU``) translate to the same JAX function as their functional form.
* torch's quantization modules (``torch.ao.nn.intrinsic.ConvReLU2d``, ``torch.ao.nn.qat.Linear``,
  ``torch.ao.nn.quantized.reference.Conv2d``, ``torch.ao.nn.quantized.Linear``, ...) translate to
  the same name under ``jaxq.nn``; they resolve once those modules exist.
* Flax has no multi-layer LSTM and no torch-style MultiheadAttention: ``torch.nn.LSTM`` /
  ``torch.nn.MultiheadAttention`` translate to :class:`jaxq.nn.quantizable.LSTM` /
  :class:`~jaxq.nn.quantizable.MultiheadAttention`, jaxq's float forms, as do torch's
  quantizable classes of the same names (``torch_names_for`` lists the ``torch.nn`` name
  first).
* Observer and fake-quantize classes (``torch.ao.quantization.observer.MinMaxObserver``,
  ``torch.ao.quantization.fake_quantize.FakeQuantize``, ...) translate to the same name under
  ``jaxq.observer`` / ``jaxq.fake_quantize``: QConfigs name them (:mod:`jaxq.interop`). In a
  QConfig, ``torch.nn.Identity`` is a constructor and becomes :class:`jaxq.qconfig.Identity`
  (the table's ``jax.nn.identity`` is its meaning as a pattern).

Because Flax modules are rank-agnostic, several torch patterns collapse onto one jaxq pattern
(``(Conv1d, ReLU)``, ``(Conv2d, ReLU)`` -> ``(nnx.Conv, jax.nn.relu)``). Where torch's
rank-specific entries then disagree (the fused module, the QAT module, ...), jaxq keeps all of
them in a :class:`ByRank` value.

Example:
  >>> from flax import nnx
  >>> from jaxq.backend_config import type_names
  >>> type_names.TORCH_TO_JAXQ["torch.nn.Conv2d"]
  Translation(target='flax.nnx.Conv', rank=2, note='')
  >>> type_names.to_jaxq("torch.nn.Conv2d") is nnx.Conv
  True
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any, NamedTuple


class Translation(NamedTuple):
    """Where a torch name lands in jaxq.

    Attributes:
      target: dotted import path of the jaxq object, ``".name"`` for a jax.Array method,
        or None when jaxq has no equivalent.
      rank: spatial rank torch encodes in the name, for rank-agnostic jaxq targets.
      note: why the target is None, or a semantic difference worth knowing.
    """

    target: str | None
    rank: int | None = None
    note: str = ""


def _rank_family(torch_template: str, target: str, ranks=(1, 2, 3)) -> dict[str, Translation]:
    return {torch_template.format(r=r): Translation(target, r) for r in ranks}


def _same_names(torch_prefix: str, jaxq_prefix: str, names: list[str]) -> dict[str, Translation]:
    return {f"{torch_prefix}.{n}": Translation(f"{jaxq_prefix}.{n}") for n in names}


_NO_FUNCTIONAL = "JAX/Flax has no functional form; configure the module instead"

TORCH_TO_JAXQ: dict[str, Translation] = {
    # --- Float modules -> Flax NNX modules (or JAX functions for activations) -------------
    "torch.nn.Linear": Translation("flax.nnx.Linear"),
    **_rank_family("torch.nn.Conv{r}d", "flax.nnx.Conv"),
    **_rank_family("torch.nn.ConvTranspose{r}d", "flax.nnx.ConvTranspose"),
    **_rank_family("torch.nn.BatchNorm{r}d", "flax.nnx.BatchNorm"),
    **_rank_family("torch.nn.InstanceNorm{r}d", "flax.nnx.InstanceNorm"),
    **_rank_family("torch.nn.MaxPool{r}d", "flax.nnx.max_pool"),
    **_rank_family("torch.nn.AvgPool{r}d", "flax.nnx.avg_pool"),
    **{f"torch.nn.AdaptiveAvgPool{r}d": Translation(
        None, r, "Flax has no adaptive pooling; global pooling is jax.numpy.mean")
       for r in (1, 2, 3)},
    "torch.nn.LayerNorm": Translation("flax.nnx.LayerNorm"),
    "torch.nn.GroupNorm": Translation("flax.nnx.GroupNorm"),
    "torch.nn.Dropout": Translation("flax.nnx.Dropout"),
    "torch.nn.PReLU": Translation("flax.nnx.PReLU"),
    "torch.nn.Embedding": Translation("flax.nnx.Embed"),
    "torch.nn.EmbeddingBag": Translation(None, note="Flax has no EmbeddingBag"),
    "torch.nn.GRUCell": Translation("flax.nnx.GRUCell"),
    "torch.nn.LSTMCell": Translation("flax.nnx.LSTMCell"),
    "torch.nn.RNNCell": Translation("flax.nnx.SimpleCell"),
    # Flax has no multi-layer LSTM nor torch-style MultiheadAttention: jaxq's float forms are
    # the quantizable classes (quantize_dynamic maps the LSTM to nnqd.LSTM, the custom
    # module config maps both to themselves, then to jaxq.nn.quantized).
    "torch.nn.LSTM": Translation(
        "jaxq.nn.quantizable.LSTM", note="jaxq's float multi-layer LSTM is the quantizable "
        "class (nnx.RNN over nnx.LSTMCell converts to it with from_float)"),
    "torch.nn.MultiheadAttention": Translation(
        "jaxq.nn.quantizable.MultiheadAttention",
        note="jaxq's float torch-style MultiheadAttention is the quantizable class"),
    "torch.nn.GRU": Translation(None, note="nnx.RNN wraps a cell; configure nnx.GRUCell"),
    "torch.nn.Identity": Translation("jax.nn.identity"),
    "torch.nn.PixelShuffle": Translation(None, note="Flax has no pixel shuffle"),
    "torch.nn.PixelUnshuffle": Translation(None, note="Flax has no pixel unshuffle"),
    "torch.nn.ReLU": Translation("jax.nn.relu"),
    "torch.nn.ReLU6": Translation("jax.nn.relu6"),
    "torch.nn.Hardtanh": Translation("jax.nn.hard_tanh"),
    "torch.nn.ELU": Translation("jax.nn.elu"),
    "torch.nn.LeakyReLU": Translation("jax.nn.leaky_relu"),
    "torch.nn.Hardswish": Translation("jax.nn.hard_swish"),
    "torch.nn.Hardsigmoid": Translation("jax.nn.hard_sigmoid"),
    "torch.nn.Sigmoid": Translation("jax.nn.sigmoid"),
    "torch.nn.Tanh": Translation("jax.numpy.tanh"),
    "torch.nn.Softmax": Translation("jax.nn.softmax"),
    # --- Functionals and torch ops -> JAX functions --------------------------------------
    "torch.nn.functional.linear": Translation(
        "jax.lax.dot_general", note="nnx.Linear and jnp.dot lower to lax.dot_general"),
    **_rank_family("torch.nn.functional.conv{r}d", "jax.lax.conv_general_dilated"),
    **_rank_family("torch.nn.functional.conv_transpose{r}d", "jax.lax.conv_transpose"),
    "torch.nn.functional.relu": Translation("jax.nn.relu"),
    "torch.relu": Translation("jax.nn.relu"),
    "torch.nn.functional.relu6": Translation("jax.nn.relu6"),
    "torch.nn.functional.hardtanh": Translation("jax.nn.hard_tanh"),
    "torch.nn.functional.hardtanh_": Translation("jax.nn.hard_tanh"),
    "torch.nn.functional.elu": Translation("jax.nn.elu"),
    "torch.nn.functional.hardswish": Translation("jax.nn.hard_swish"),
    "torch.nn.functional.leaky_relu": Translation("jax.nn.leaky_relu"),
    "torch.nn.functional.hardsigmoid": Translation("jax.nn.hard_sigmoid"),
    "torch.sigmoid": Translation("jax.nn.sigmoid"),
    "torch.tanh": Translation("jax.numpy.tanh"),
    "torch.nn.functional.softmax": Translation("jax.nn.softmax"),
    "torch.nn.functional.dropout": Translation(None, note=_NO_FUNCTIONAL),
    "torch.nn.functional.layer_norm": Translation(None, note=_NO_FUNCTIONAL),
    "torch.nn.functional.group_norm": Translation(None, note=_NO_FUNCTIONAL),
    "torch.nn.functional.instance_norm": Translation(None, note=_NO_FUNCTIONAL),
    "torch.nn.functional.interpolate": Translation("jax.image.resize"),
    **_rank_family("torch.nn.functional.max_pool{r}d", "flax.nnx.max_pool"),
    "torch.avg_pool1d": Translation("flax.nnx.avg_pool", 1),
    "torch._C._nn.avg_pool2d": Translation("flax.nnx.avg_pool", 2),
    "torch._C._nn.avg_pool3d": Translation("flax.nnx.avg_pool", 3),
    "torch.adaptive_avg_pool1d": Translation(None, 1, "Flax has no adaptive pooling"),
    "torch.nn.functional.adaptive_avg_pool2d": Translation(None, 2, "Flax has no adaptive pooling"),
    "torch.nn.functional.adaptive_avg_pool3d": Translation(None, 3, "Flax has no adaptive pooling"),
    "torch.nn.functional.pixel_shuffle": Translation(None, note="JAX has no pixel shuffle"),
    "torch.nn.functional.pixel_unshuffle": Translation(None, note="JAX has no pixel unshuffle"),
    "torch.add": Translation("jax.numpy.add"),
    "torch.mul": Translation("jax.numpy.multiply"),
    "torch.matmul": Translation("jax.numpy.matmul"),
    "torch.cat": Translation("jax.numpy.concatenate"),
    "torch.clamp": Translation("jax.numpy.clip"),
    "torch.flatten": Translation("jax.numpy.ravel", note="torch.flatten(x, start_dim) is a reshape"),
    "torch.mean": Translation("jax.numpy.mean"),
    "torch.narrow": Translation("jax.lax.slice_in_dim"),
    "torch.repeat_interleave": Translation("jax.numpy.repeat"),
    "torch.transpose": Translation("jax.numpy.swapaxes"),
    "torch.squeeze": Translation("jax.numpy.squeeze"),
    "torch.stack": Translation("jax.numpy.stack"),
    "torch.unsqueeze": Translation("jax.numpy.expand_dims"),
    "operator.add": Translation("operator.add"),
    "operator.mul": Translation("operator.mul"),
    "operator.floordiv": Translation("operator.floordiv"),
    # --- Tensor method names -> jax.Array methods or JAX functions -----------------------
    "contiguous": Translation(None, note="jax.Array has no memory layout to make contiguous"),
    "clamp": Translation(".clip"),
    "detach": Translation("jax.lax.stop_gradient"),
    "detach_": Translation("jax.lax.stop_gradient"),
    "mean": Translation(".mean"),
    "permute": Translation(".transpose"),
    "repeat": Translation("jax.numpy.tile"),
    "repeat_interleave": Translation(".repeat"),
    "reshape": Translation(".reshape"),
    "view": Translation(".reshape"),
    "resize_": Translation(None, note="jax.Array is immutable"),
    "relu": Translation("jax.nn.relu"),
    "relu_": Translation("jax.nn.relu"),
    "squeeze": Translation(".squeeze"),
    "squeeze_": Translation(".squeeze"),
    "transpose": Translation(".swapaxes"),
    "unsqueeze": Translation("jax.numpy.expand_dims"),
    "unsqueeze_": Translation("jax.numpy.expand_dims"),
    "shape": Translation(".shape"),
    "size": Translation(".shape", note="torch's size() is jax's shape; jax's .size is numel"),
    "hardsigmoid": Translation("jax.nn.hard_sigmoid"),
    "hardsigmoid_": Translation("jax.nn.hard_sigmoid"),
    "sigmoid": Translation("jax.nn.sigmoid"),
    "sigmoid_": Translation("jax.nn.sigmoid"),
    "tanh": Translation("jax.numpy.tanh"),
    "tanh_": Translation("jax.numpy.tanh"),
    # --- torch.ao.nn quantization modules -> the same names under jaxq.nn ------------------
    **_same_names("torch.ao.nn.intrinsic", "jaxq.nn.intrinsic", [
        "LinearReLU", "LinearBn1d", "BNReLU2d", "BNReLU3d",
        *(f"{k}{r}d" for k in ("ConvReLU", "ConvBn", "ConvBnReLU") for r in (1, 2, 3))]),
    **_same_names("torch.ao.nn.intrinsic.qat", "jaxq.nn.intrinsic.qat", [
        "LinearReLU", "LinearBn1d",
        *(f"{k}{r}d" for k in ("ConvReLU", "ConvBn", "ConvBnReLU") for r in (1, 2, 3))]),
    **_same_names("torch.ao.nn.qat", "jaxq.nn.qat", [
        "Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding", "EmbeddingBag"]),
    **_same_names("torch.ao.nn.quantized.reference", "jaxq.nn.quantized.reference", [
        "Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
        "ConvTranspose3d", "GRUCell", "LSTMCell", "RNNCell", "LSTM", "GRU", "Embedding",
        "EmbeddingBag"]),
    **_same_names("torch.ao.quantization.fuser_method_mappings",
                  "jaxq.fuser_method_mappings", [
                      "fuse_conv_bn", "fuse_conv_bn_relu", "fuse_linear_bn",
                      "fuse_convtranspose_bn"]),
    # --- Ops only torch's other backend configs name (onednn, executorch, tensorrt) -------
    "operator.sub": Translation("operator.sub"),
    "torch.sub": Translation("jax.numpy.subtract"),
    "torch.concat": Translation("jax.numpy.concatenate"),
    "torch.concatenate": Translation("jax.numpy.concatenate"),
    "torch.permute": Translation("jax.numpy.transpose"),
    "torch.permute_copy": Translation("jax.numpy.transpose"),
    "torch.addmm": Translation(None, note="JAX has no addmm; x @ w + b lowers to "
                               "jax.lax.dot_general"),
    "torch.nn.functional.pad": Translation("jax.numpy.pad"),
    "torch.nn.functional.embedding": Translation(None, note=_NO_FUNCTIONAL),
    "torch._C._nn.leaky_relu_": Translation("jax.nn.leaky_relu"),
    "leaky_relu": Translation("jax.nn.leaky_relu"),
    "torch.nn.Flatten": Translation(None, note="Flax has no Flatten module; use x.reshape"),
    "torch.nn.ConstantPad2d": Translation(None, 2, "Flax has no padding modules; use "
                                          "jax.numpy.pad"),
    **{f"torch.ao.nn.intrinsic.{name}": Translation(None, note="onednn-only fused module; "
                                                    "jaxq has none")
       for name in ("ConvAdd2d", "ConvAddReLU2d", "LinearLeakyReLU", "LinearTanh")},
    "torch.ao.quantization.backend_config.onednn._fuse_linear_bn_leaky_relu": Translation(
        None, note="onednn-only fusion; jaxq has no LinearLeakyReLU"),
    # --- Observer / fake-quantize classes (QConfig constructors; PyTorch interop) ----------
    **_same_names("torch.ao.quantization.observer", "jaxq.observer", [
        "MinMaxObserver", "MovingAverageMinMaxObserver", "PerChannelMinMaxObserver",
        "MovingAveragePerChannelMinMaxObserver", "HistogramObserver", "PlaceholderObserver",
        "RecordingObserver", "NoopObserver", "ReuseInputObserver", "FixedQParamsObserver"]),
    **_same_names("torch.ao.quantization.fake_quantize", "jaxq.fake_quantize", [
        "FakeQuantize", "FixedQParamsFakeQuantize", "FusedMovingAvgObsFakeQuantize"]),
    "torch.ao.quantization._learnable_fake_quantize._LearnableFakeQuantize": Translation(
        "jaxq.fake_quantize._LearnableFakeQuantize"),
    # --- Eager stubs and converted (quantized) modules: checkpoints and custom configs ----
    "torch.ao.quantization.stubs.QuantStub": Translation("jaxq.eager.QuantStub"),
    "torch.ao.quantization.stubs.DeQuantStub": Translation("jaxq.eager.DeQuantStub"),
    "torch.ao.quantization.stubs.QuantWrapper": Translation("jaxq.eager.QuantWrapper"),
    **_same_names("torch.ao.nn.quantized", "jaxq.nn.quantized", [
        "Linear", "Conv1d", "Conv2d", "Conv3d", "Quantize", "DeQuantize", "BatchNorm2d",
        "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
        "InstanceNorm3d", "ELU", "Hardswish", "LeakyReLU", "ReLU6", "Sigmoid", "Softmax",
        "Dropout", "FloatFunctional", "FXFloatFunctional", "QFunctional", "LSTM",
        "MultiheadAttention"]),
    **_same_names("torch.ao.nn.quantized.dynamic", "jaxq.nn.quantized.dynamic", [
        "Linear", "RNNCell", "LSTMCell", "GRUCell", "LSTM", "GRU"]),
    # After torch.nn.LSTM / MultiheadAttention (above), so that torch_names_for(the jaxq
    # class) lists the float name first: torch's custom module configs name these.
    **_same_names("torch.ao.nn.quantizable", "jaxq.nn.quantizable", [
        "LSTMCell", "LSTM", "MultiheadAttention"]),
    **_same_names("torch.ao.nn.intrinsic.quantized", "jaxq.nn.intrinsic.quantized", [
        "LinearReLU", "BNReLU2d", "BNReLU3d", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d"]),
}


def is_method_name(name: str) -> bool:
    """Whether a torch pattern string names a Tensor method (no dot) rather than an object."""
    return "." not in name


def import_object(path: str) -> Any:
    """Imports ``"package.module.attr.attr"``: the longest importable module, then attributes.

    Raises:
      LookupError: naming ``path`` when nothing by that name can be imported.
    """
    if not isinstance(path, str) or not path or path.startswith("."):
        raise TypeError(f"path={path!r} must be a dotted import path such as 'flax.nnx.Conv'")
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            break
        return obj
    raise LookupError(f"path={path!r} names nothing importable")


def to_jaxq(torch_name: str, *, missing: str = "raise") -> Any:
    """The jaxq object (or jax.Array method name string) that a torch name translates to.

    Args:
      torch_name: a key of :data:`TORCH_TO_JAXQ` (``"torch.nn.Linear"``, ``"reshape"``).
      missing: what to do when jaxq has no equivalent, or the jaxq object does not exist
        (yet): ``"raise"`` (LookupError naming the reason) or ``"none"`` (return None).

    Returns:
      The object, or for jax.Array methods the bare method name (``"reshape"``), matching
      how torch's configs spell method names.

    Example:
      >>> import jax
      >>> to_jaxq("torch.nn.functional.relu") is jax.nn.relu
      True
      >>> to_jaxq("view")
      'reshape'
    """
    if missing not in ("raise", "none"):
        raise ValueError(f"missing={missing!r}; accepted: 'raise', 'none'")
    if torch_name not in TORCH_TO_JAXQ:
        raise KeyError(f"torch_name={torch_name!r} is not in jaxq's torch translation table "
                       "(jaxq.backend_config.type_names.TORCH_TO_JAXQ)")
    translation = TORCH_TO_JAXQ[torch_name]
    if translation.target is None:
        if missing == "none":
            return None
        raise LookupError(f"torch_name={torch_name!r} has no jaxq equivalent: {translation.note}")
    if translation.target.startswith("."):
        return translation.target[1:]
    try:
        return import_object(translation.target)
    except LookupError:
        if missing == "none":
            return None
        raise LookupError(f"torch_name={torch_name!r} translates to {translation.target!r}, "
                          "which does not exist (yet)") from None


def rank_of(torch_name: str) -> int | None:
    """The spatial rank torch encodes in ``torch_name`` (``"torch.nn.Conv2d"`` -> 2)."""
    return TORCH_TO_JAXQ[torch_name].rank


_TORCH_OBJECT_TO_NAME: dict[Any, str] | None = None


def torch_name_of(torch_object: Any) -> str:
    """The table key of a torch object (class, function or method-name string).

    Imports torch on first use (torch is needed only for interop).

    Raises:
      KeyError: naming ``torch_object`` when it is not in the table.
    """
    global _TORCH_OBJECT_TO_NAME
    if isinstance(torch_object, str):
        if torch_object in TORCH_TO_JAXQ:
            return torch_object
        raise KeyError(f"torch_object={torch_object!r} is not in jaxq's torch translation table")
    if _TORCH_OBJECT_TO_NAME is None:
        table = {}
        for name in TORCH_TO_JAXQ:
            if is_method_name(name):
                continue
            try:
                obj = import_object(name)
            except LookupError:
                continue
            table.setdefault(_identity_key(obj), name)
        _TORCH_OBJECT_TO_NAME = table
    key = _identity_key(torch_object)
    if key not in _TORCH_OBJECT_TO_NAME:
        raise KeyError(f"torch_object={torch_object!r} is not in jaxq's torch translation table")
    return _TORCH_OBJECT_TO_NAME[key]


def _identity_key(obj: Any) -> Any:
    # Some torch builtins are unhashable-by-value or compare oddly; identity is what patterns use.
    return id(obj)


def translate_torch_object(torch_object: Any, *, missing: str = "raise") -> Any:
    """:func:`to_jaxq` for a torch object rather than its name."""
    return to_jaxq(torch_name_of(torch_object), missing=missing)


@dataclasses.dataclass(frozen=True)
class ByRank:
    """A per-spatial-rank choice where torch has rank-specific classes and Flax does not.

    Flax's ``nnx.Conv`` covers torch's ``Conv1d``/``Conv2d``/``Conv3d``, so a jaxq pattern
    such as ``(nnx.Conv, jax.nn.relu)`` stands for three torch patterns whose fused module,
    QAT module or reference module differ by rank. A ByRank keeps each.

    Attributes:
      by_rank: tuple of ``(rank, value)`` pairs, sorted by rank.

    Example:
      >>> choice = ByRank.from_dict({1: "a", 2: "b"})
      >>> choice.for_rank(2)
      'b'
    """

    by_rank: tuple[tuple[int, Any], ...]

    @classmethod
    def from_dict(cls, mapping: Mapping[int, Any]) -> ByRank:
        for rank in mapping:
            if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
                raise ValueError(f"mapping has rank={rank!r}; ranks are non-negative ints")
        return cls(tuple(sorted(mapping.items())))

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(rank for rank, _ in self.by_rank)

    def for_rank(self, rank: int) -> Any:
        """The value for ``rank``.

        Raises:
          KeyError: naming ``rank`` and the ranks available.
        """
        for r, value in self.by_rank:
            if r == rank:
                return value
        raise KeyError(f"rank={rank!r} not available; accepted: {self.ranks}")

    def for_module(self, module: Any) -> Any:
        """The value for a module whose rank is ``len(module.kernel_size)`` (nnx.Conv...)."""
        kernel_size = getattr(module, "kernel_size", None)
        if kernel_size is None:
            raise TypeError(f"module={type(module).__name__} has no kernel_size to infer its "
                            "rank from; call for_rank(rank) instead")
        return self.for_rank(len(kernel_size))

    def __call__(self, *args, **kwargs):
        """Dispatches a per-rank fuser method on the first argument that has a rank.

        torch's fuser methods take ``(is_qat, module, ...)``; the first module with a
        ``kernel_size`` decides the rank.
        """
        for arg in args:
            if getattr(arg, "kernel_size", None) is not None:
                target = self.for_module(arg)
                break
        else:
            raise TypeError("ByRank call needs an argument with kernel_size to pick a rank")
        if not callable(target):
            raise TypeError(f"ByRank value {target!r} for this rank is not callable")
        return target(*args, **kwargs)


_JAXQ_OBJECT_TO_TORCH_NAMES: dict[Any, list[str]] | None = None


def _jaxq_to_torch_index() -> dict[Any, list[str]]:
    global _JAXQ_OBJECT_TO_TORCH_NAMES
    if _JAXQ_OBJECT_TO_TORCH_NAMES is None:
        index: dict[Any, list[str]] = {}
        for name, translation in TORCH_TO_JAXQ.items():
            target = to_jaxq(name, missing="none")
            if target is None:
                continue
            key = ("method", target) if isinstance(target, str) else _identity_key(target)
            index.setdefault(key, []).append(name)
        _JAXQ_OBJECT_TO_TORCH_NAMES = index
    return _JAXQ_OBJECT_TO_TORCH_NAMES


def torch_names_for(jaxq_object: Any) -> list[str]:
    """Every table key that translates to ``jaxq_object``, in table order (the inverse of
    :func:`to_jaxq`; one jaxq object may stand for several torch names).

    ``jaxq_object`` is a jaxq / Flax / JAX object or a jax.Array method name string.
    Does not import torch.

    Example:
      >>> from flax import nnx
      >>> torch_names_for(nnx.Conv)
      ['torch.nn.Conv1d', 'torch.nn.Conv2d', 'torch.nn.Conv3d']
      >>> torch_names_for("reshape")
      ['reshape', 'view']
    """
    key = ("method", jaxq_object) if isinstance(jaxq_object, str) else _identity_key(jaxq_object)
    return list(_jaxq_to_torch_index().get(key, []))


def jaxq_path_of(jaxq_object: Any) -> str | None:
    """The table's dotted target path for ``jaxq_object`` (``nnx.Conv`` -> ``"flax.nnx.Conv"``),
    or None when no table entry targets it."""
    for name in torch_names_for(jaxq_object):
        target = TORCH_TO_JAXQ[name].target
        if target is not None and not target.startswith("."):
            return target
    return None
