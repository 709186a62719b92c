"""torch checkpoints into jaxq models: observer statistics and converted quantized models.

Names. A jaxq module's torch name is its attribute path (``"features.0.conv"``), with the
``layers`` level of ``nnx.Sequential`` dropped (torch's ``nn.Sequential`` children are
``"0"``, ``"1"``, ...; Flax keeps them in ``Sequential.layers``). ``key_map`` changes the rest:
a dict ``{jaxq module path: torch module path}`` (``{"quant": ""}`` puts the QuantStub's
``scale`` at torch's top-level ``"scale"``) or a callable ``jaxq_key -> torch_key`` applied to
full keys (``"fc.scale"``); e.g. an FX-converted model keeps the input qparams as
``"_scale_0"`` / ``"_zero_point_0"`` instead of a ``quant`` submodule.

Values. Quantized weights come from torch's own unpacking: ``state_dict()`` already stores
``(weight, bias)`` for Linear (``"_packed_params._packed_params"``) and ``weight`` / ``bias``
for ConvNd; raw packed-params objects are unpacked with ``torch.ops.quantized.*_unpack``.
qint8 values, float32 scales and int32 zero points (torch: float64 / int64 per-channel
qparams, rounded as torch rounds them when it quantizes) go into the jaxq module's
``set_weight_bias`` (torch's ``(out, in, *k)`` layout, which the module packs into Flax's).
Everything is checked before anything is written: a missing or unexpected key, a shape or
dtype that does not fit raises ValueError naming the entry and leaves the model unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["load_torch_observer_state_dict", "load_torch_state_dict", "torch_module_paths"]


def torch_module_paths(model: nnx.Module, key_map: Any = None) -> Iterator[
        tuple[str, str, nnx.Module]]:
    """``(jaxq path, torch path, module)`` for every module of ``model``, parents first."""
    from jaxq.eager._tree import named_children

    if isinstance(key_map, dict):
        module_map = dict(key_map)
    elif key_map is None or callable(key_map):
        module_map = {}
    else:
        raise TypeError(f"key_map={key_map!r} must be None, a dict of module paths or a "
                        "callable on keys")
    seen: set[int] = set()

    def join(prefix: str, name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    def walk(node: nnx.Module, jaxq_path: str, torch_path: str, emit: bool):
        if id(node) in seen:
            return
        seen.add(id(node))
        if emit:
            torch_path = module_map.get(jaxq_path, torch_path)
            yield jaxq_path, torch_path, node
        for name, child in named_children(node):
            if isinstance(node, nnx.Sequential) and name == "layers":
                yield from walk(child, join(jaxq_path, name), torch_path, False)
            else:
                yield from walk(child, join(jaxq_path, name), join(torch_path, name), True)

    yield from walk(model, "", "", True)


def _torch_key(torch_path: str, name: str, jaxq_key: str, key_map: Any) -> str:
    key = f"{torch_path}.{name}" if torch_path else name
    if callable(key_map) and not isinstance(key_map, dict):
        key = key_map(jaxq_key)
        if not isinstance(key, str):
            raise TypeError(f"key_map({jaxq_key!r}) returned {key!r}; expected a str")
    return key


def _as_numpy(value: Any, key: str) -> np.ndarray:
    if hasattr(value, "is_quantized") and value.is_quantized:
        raise ValueError(f"state_dict[{key!r}] is a quantized tensor where a float / int "
                         "array is expected")
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


# --- observer statistics ----------------------------------------------------------------

def load_torch_observer_state_dict(model: nnx.Module, state_dict: dict[str, Any],
                                   key_map: Any = None, strict: bool = True) -> None:
    """Loads torch's ``get_observer_state_dict(prepared_model)`` into a prepared jaxq model.

    Calibrate in torch, prepare the same model in jaxq (same module names, see the module
    docstring), load the statistics: min/max, moving averages, histograms and per-channel
    buffers land in the matching jaxq observers, so ``calculate_qparams()`` (and hence
    ``convert``) gives torch's qparams.

    Args:
      model: a prepared jaxq model (or any module tree holding observers).
      state_dict: torch's ``get_observer_state_dict`` output (or the observer entries of a
        ``state_dict()``), tensors or arrays.
      key_map: see the module docstring.
      strict: every jaxq statistic must be in ``state_dict`` (torch's
        ``get_observer_state_dict`` leaves out a fake-quantize's own ``scale`` /
        ``zero_point`` / flags; pass ``strict=False`` to keep jaxq's values for those, with
        a warning listing them).

    Raises:
      ValueError: a torch key naming no jaxq observer statistic, a missing statistic
        (``strict``), a shape mismatch or an ``eps`` that differs from the observer's.
    """
    from jaxq.observer.state_dict import get_observer_state_dict, load_observer_state_dict

    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict; got {type(state_dict).__name__}")
    current = get_observer_state_dict(model)
    paths = {jaxq_path: torch_path for jaxq_path, torch_path, _ in
             torch_module_paths(model, key_map)}
    torch_to_jaxq: dict[str, str] = {}
    for jaxq_key in current:
        prefix, _, name = jaxq_key.rpartition(".")
        torch_to_jaxq[_torch_key(paths.get(prefix, prefix), name, jaxq_key, key_map)] = jaxq_key
    # torch keeps eps as a buffer; jaxq checks it against the observer's static eps.
    for jaxq_path, torch_path in paths.items():
        jaxq_eps = f"{jaxq_path}.eps" if jaxq_path else "eps"
        torch_to_jaxq.setdefault(_torch_key(torch_path, "eps", jaxq_eps, key_map), jaxq_eps)
    unexpected = [key for key in state_dict if key not in torch_to_jaxq]
    if unexpected:
        raise ValueError(f"torch state_dict entries {unexpected} name no observer statistic "
                         "of the jaxq model (check module names or pass key_map)")
    translated = {torch_to_jaxq[key]: value for key, value in state_dict.items()}
    missing = [key for key in current if key not in translated]
    if missing:
        if strict:
            torch_names = {v: k for k, v in torch_to_jaxq.items()}
            raise ValueError("torch state_dict lacks the observer statistics "
                             f"{[torch_names.get(k, k) for k in missing]} of the jaxq model "
                             "(strict=False keeps jaxq's values for them)")
        warnings.warn(f"observer statistics {missing} are not in the torch state_dict; "
                      "jaxq's values are kept", UserWarning, stacklevel=2)
        translated = {**{k: current[k] for k in missing}, **translated}
    load_observer_state_dict(model, translated)


# --- converted (quantized) models -------------------------------------------------------

class _Reader:
    """Reads torch entries for one module, recording which keys were used."""

    def __init__(self, state_dict: dict[str, Any], used: set[str], torch_path: str,
                 jaxq_path: str, key_map: Any):
        self.state_dict, self.used = state_dict, used
        self.torch_path, self.jaxq_path, self.key_map = torch_path, jaxq_path, key_map

    def key(self, name: str) -> str:
        jaxq_key = f"{self.jaxq_path}.{name}" if self.jaxq_path else name
        return _torch_key(self.torch_path, name, jaxq_key, self.key_map)

    def has(self, name: str) -> bool:
        return self.key(name) in self.state_dict

    def get(self, name: str) -> tuple[str, Any]:
        key = self.key(name)
        if key not in self.state_dict:
            raise ValueError(f"torch state_dict is missing {key!r} (for jaxq module "
                             f"{self.jaxq_path or '<root>'!r})")
        self.used.add(key)
        return key, self.state_dict[key]


def _scalar(value: Any, key: str, dtype: Any) -> jnp.ndarray:
    array = _as_numpy(value, key)
    if array.size != 1:
        raise ValueError(f"state_dict[{key!r}] has shape {array.shape}; expected one value")
    return jnp.asarray(array.reshape(()).astype(dtype))


def _qweight(value: Any, key: str, shape: tuple[int, ...]) -> Any:
    """A torch qint8 quantized tensor -> jaxq QTensor (torch layout), checked."""
    from jaxq.core.dtypes import qint8
    from jaxq.core.qtensor import QTensor

    if not (hasattr(value, "is_quantized") and value.is_quantized):
        raise ValueError(f"state_dict[{key!r}] must be a quantized torch tensor; got "
                         f"{type(value).__name__}")
    if str(value.dtype) != "torch.qint8":
        raise ValueError(f"state_dict[{key!r}] has dtype {value.dtype}; jaxq's quantized "
                         "Linear / Conv take torch.qint8 weights")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"state_dict[{key!r}] has shape {tuple(value.shape)} but the jaxq "
                         f"module expects {tuple(shape)} (torch layout)")
    data = value.int_repr().numpy()
    scheme = str(value.qscheme()).removeprefix("torch.")
    if scheme in ("per_tensor_affine", "per_tensor_symmetric"):
        return QTensor(jnp.asarray(data), np.float32(value.q_scale()),
                       np.int32(value.q_zero_point()), qint8)
    if scheme in ("per_channel_affine", "per_channel_symmetric"):
        axis = int(value.q_per_channel_axis())
        if axis != 0:
            raise ValueError(f"state_dict[{key!r}] is quantized per channel along axis "
                             f"{axis}; jaxq's modules take output-channel (axis 0) qparams")
        return QTensor(jnp.asarray(data),
                       value.q_per_channel_scales().numpy().astype(np.float32),
                       value.q_per_channel_zero_points().numpy().astype(np.int32), qint8,
                       "per_channel_affine", 0)
    raise ValueError(f"state_dict[{key!r}] has qscheme {scheme}; expected per-tensor or "
                     "per-channel affine")


def _bias(value: Any, key: str, expected: Any, size: int) -> Any:
    if value is None:
        if expected is not None:
            raise ValueError(f"state_dict[{key!r}] is None but the jaxq module has a bias")
        return None
    array = _as_numpy(value, key).astype(np.float32)
    if expected is None:
        raise ValueError(f"state_dict[{key!r}] holds a bias but the jaxq module has none")
    if array.shape != (size,):
        raise ValueError(f"state_dict[{key!r}] has shape {array.shape}; expected ({size},)")
    return jnp.asarray(array)


def _unpack(packed: Any, key: str, kind: str) -> tuple[Any, Any]:
    """``(weight, bias)`` from a tuple or a torch packed-params object."""
    if isinstance(packed, (tuple, list)) and len(packed) == 2:
        return packed[0], packed[1]
    import torch
    try:
        if kind == "linear":
            return torch.ops.quantized.linear_unpack(packed)
        return getattr(torch.ops.quantized, f"{kind}_unpack")(packed)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(f"state_dict[{key!r}] is not torch {kind} packed params: "
                         f"{error}") from None


def _plan_qparams(reader: _Reader, module: Any, plan: list) -> None:
    key, value = reader.get("scale")
    plan.append((module.scale, _scalar(value, key, np.float32)))
    key, value = reader.get("zero_point")
    plan.append((module.zero_point, _scalar(value, key, np.int32)))


def _plan_linear(reader: _Reader, module: Any, plan: list) -> None:
    key, packed = reader.get("_packed_params._packed_params")
    if reader.has("_packed_params.dtype"):
        dtype_key, dtype = reader.get("_packed_params.dtype")
        if str(dtype) != "torch.qint8":
            raise ValueError(f"state_dict[{dtype_key!r}]={dtype}; jaxq's quantized Linear "
                             "takes torch.qint8 weights")
    weight, bias = _unpack(packed, key, "linear")
    qweight = _qweight(weight, key, (module.out_features, module.in_features))
    bias = _bias(bias, key, module.bias(), module.out_features)
    plan.append((module.set_weight_bias, (qweight, bias)))
    if hasattr(module, "scale"):
        _plan_qparams(reader, module, plan)


def _plan_conv(reader: _Reader, module: Any, plan: list) -> None:
    shape = (module.out_channels, module.in_channels // module.groups) + tuple(
        module.kernel_size)
    if reader.has("weight"):
        key, weight = reader.get("weight")
        bias_key, bias = reader.get("bias") if reader.has("bias") else (reader.key("bias"),
                                                                        None)
    else:
        key, packed = reader.get("_packed_params")
        weight, bias = _unpack(packed, key, f"conv{len(module.kernel_size)}d")
        bias_key = key
    qweight = _qweight(weight, key, shape)
    bias = _bias(bias, bias_key, module.bias(), module.out_channels)
    plan.append((module.set_weight_bias, (qweight, bias)))
    _plan_qparams(reader, module, plan)


def _plan_generic(reader: _Reader, module: Any, plan: list) -> None:
    """Any other module: each QuantizedState attribute <-> ``<path>.<name>``."""
    from jaxq.nn.quantized._utils import QuantizedState

    for name, variable in list(vars(module).items()):
        if not isinstance(variable, QuantizedState):
            continue
        key, value = reader.get(name)
        current = variable.get_value()
        if current is None:
            if value is not None:
                raise ValueError(f"state_dict[{key!r}] holds a value but the jaxq module's "
                                 f"{name} is None")
            continue
        if value is None:
            raise ValueError(f"state_dict[{key!r}] is None but the jaxq module has a {name}")
        array = _as_numpy(value, key)
        current = np.asarray(current)
        if array.shape != current.shape:
            if array.size == current.size == 1:
                array = array.reshape(current.shape)
            else:
                raise ValueError(f"state_dict[{key!r}] has shape {array.shape} but the jaxq "
                                 f"module expects {current.shape}")
        plan.append((variable, jnp.asarray(array.astype(current.dtype))))


def _planner(module: Any) -> Callable | None:
    from jaxq.nn.quantized._utils import QuantizedState
    from jaxq.nn.quantized.conv import _ConvNd
    from jaxq.nn.quantized.linear import Linear, LinearPackedParams

    if isinstance(module, _ConvNd):
        return _plan_conv
    if isinstance(module, Linear) or (
            isinstance(getattr(module, "_packed_params", None), LinearPackedParams)):
        return _plan_linear
    if isinstance(module, LinearPackedParams):
        return None  # read through its owner
    if any(isinstance(v, QuantizedState) for v in vars(module).values()):
        return _plan_generic
    return None


def load_torch_state_dict(model: nnx.Module, state_dict: dict[str, Any],
                          key_map: Any = None) -> None:
    """Loads a converted torch model's ``state_dict`` into the equivalent jaxq quantized model.

    Build the jaxq model with the same module names (eager: the same attributes, fused and
    converted with jaxq.eager; see the module docstring for Sequential and ``key_map``), then
    load: quantized Linear / ConvNd weights (qint8, per-tensor or per-channel), their float
    bias and output ``scale`` / ``zero_point``, the ``Quantize`` stubs' qparams, and the
    qparams and buffers of every other quantized module (activations, functional ops,
    normalizations).

    Args:
      model: the jaxq quantized model (after ``jaxq.eager.convert``, or built directly).
      state_dict: ``torch_model.state_dict()`` of an eager- or FX-converted model.
      key_map: see the module docstring.

    Raises:
      ValueError: naming the entry: a missing key, an unexpected key (one no jaxq module
        reads), a shape, dtype or qscheme that does not fit. The model is unchanged then.

    Example:
      >>> # torch: tq.convert(prepared) -> qmodel;  jaxq: jaxq.eager.convert(...) -> jmodel
      >>> # load_torch_state_dict(jmodel, qmodel.state_dict())
    """
    from jaxq.eager._tree import check_module

    check_module(model)
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict; got {type(state_dict).__name__}")
    used: set[str] = set()
    plan: list[tuple[Any, Any]] = []
    for jaxq_path, torch_path, module in torch_module_paths(model, key_map):
        planner = _planner(module)
        if planner is not None:
            planner(_Reader(state_dict, used, torch_path, jaxq_path, key_map), module, plan)
    unexpected = [key for key in state_dict if key not in used]
    if unexpected:
        raise ValueError(f"torch state_dict entries {unexpected} match no quantized module of "
                         "the jaxq model (check module names or pass key_map)")
    for target, value in plan:
        if callable(target) and not isinstance(target, nnx.Variable):
            target(*value)
        else:
            target.set_value(value)
