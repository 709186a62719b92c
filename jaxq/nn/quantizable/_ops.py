"""Tensor plumbing shared by the quantizable / quantized LSTM and MultiheadAttention.

torch writes these modules once and lets tensor dispatch pick float or quantized kernels
(``chunk``, ``flip``, ``cat``, ``stack``, ``torch.tanh`` and ``nn.Sigmoid`` all accept a
quantized tensor). jaxq has two array kinds, ``jax.Array`` and :class:`jaxq.QTensor`, so
the modules call these helpers, which pick the float op or torch's quantized op:

* layout-only ops (chunk, flip, transpose, reshape, repeat) move a per-tensor QTensor's
  integers and keep its qparams, as torch's quantized views do;
* ``cat`` / ``stack`` of QTensors requantize every input to the *first* input's qparams
  (torch's ``cat`` on quantized tensors; it warns when qparams differ), via
  :func:`jaxq.nn.quantized.ops.cat`;
* ``sigmoid`` / ``tanh`` of a QTensor: torch's fixed output qparams (``1/256`` /
  ``2/256`` with zero point ``0`` / ``128`` for quint8, ``-128`` / ``0`` for qint8),
  dequantize - float op - requantize (torch's x86 ``qsigmoid`` / ``qtanh`` kernels).
  XLA's ``tanh`` / ``exp`` are not ATen's Sleef ones (a few ulps apart), so an output
  sitting on a rounding boundary can differ by one quantum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxq.core.affine import exact_divide
from jaxq.core.dtypes import quint8
from jaxq.core.qtensor import QTensor, quantize_per_tensor
from jaxq.nn.quantized import functional as qF
from jaxq.nn.quantized import ops as qops

__all__ = ["is_quantized", "chunk", "flip", "swapaxes", "reshape", "cat", "stack",
           "stack_shared_qparams", "cat_shared_qparams", "sigmoid", "tanh",
           "quantized_zeros", "mean"]


def is_quantized(x: Any) -> bool:
    """Whether ``x`` is a :class:`jaxq.QTensor`."""
    return isinstance(x, QTensor)


def _map_data(x: Any, fn: Callable[[jax.Array], jax.Array]) -> Any:
    """``fn`` on the values (a QTensor's integers, its per-tensor qparams kept)."""
    if isinstance(x, QTensor):
        if x.qscheme().is_per_channel:
            raise ValueError("quantizable LSTM / MultiheadAttention take per-tensor "
                             "QTensors; got a per-channel one")
        return QTensor(fn(x.data), x.scale, x.zero_point, x.dtype)
    return fn(x)


def chunk(x: Any, chunks: int, axis: int = -1) -> list[Any]:
    """``torch.chunk`` into equal parts (the fused LSTM gates)."""
    if isinstance(x, QTensor):
        return [QTensor(d, x.scale, x.zero_point, x.dtype)
                for d in jnp.split(x.data, chunks, axis=axis)]
    return jnp.split(x, chunks, axis=axis)


def flip(x: Any, axis: int = 0) -> Any:
    return _map_data(x, lambda d: jnp.flip(d, axis=axis))


def swapaxes(x: Any, a: int = 0, b: int = 1) -> Any:
    return _map_data(x, lambda d: jnp.swapaxes(d, a, b))


def reshape(x: Any, shape: Sequence[int]) -> Any:
    return _map_data(x, lambda d: jnp.reshape(d, tuple(shape)))


def cat(xs: Sequence[Any], axis: int = 0) -> Any:
    """``torch.cat``: QTensors are requantized to the first one's qparams."""
    if isinstance(xs[0], QTensor):
        first = xs[0]
        return qops.cat(list(xs), first.scale, first.zero_point, dim=axis)
    return jnp.concatenate(xs, axis=axis)


def stack(xs: Sequence[Any], axis: int = 0) -> Any:
    """``torch.stack`` (``cat`` of the unsqueezed inputs; see :func:`cat`)."""
    return cat([_map_data(x, lambda d: jnp.expand_dims(d, axis)) for x in xs], axis=axis)


def cat_shared_qparams(xs: Sequence[Any], axis: int = 0) -> Any:
    """``torch.cat`` of inputs that share qparams by construction: torch's fast path
    concatenates the integers, and so does this (no requantization)."""
    if isinstance(xs[0], QTensor):
        first = xs[0]
        return QTensor(jnp.concatenate([x.data for x in xs], axis=axis), first.scale,
                       first.zero_point, first.dtype)
    return jnp.concatenate(xs, axis=axis)


def stack_shared_qparams(xs: Sequence[Any], axis: int = 0) -> Any:
    """``torch.stack`` of inputs that share qparams by construction (one module's
    outputs): torch's fast path concatenates the integers, and so does this."""
    if isinstance(xs[0], QTensor):
        first = xs[0]
        return QTensor(jnp.stack([x.data for x in xs], axis=axis), first.scale,
                       first.zero_point, first.dtype)
    return jnp.stack(xs, axis=axis)


def sigmoid(x: Any, module: Callable[[Any], Any] | None = None) -> Any:
    """``module(x)`` (``jaxq.nn.Sigmoid``, maybe observed) on floats; torch's quantized
    sigmoid (output qparams ``1/256`` and ``0`` / ``-128``) on a QTensor."""
    if isinstance(x, QTensor):
        return qF.sigmoid(x)
    return jax.nn.sigmoid(x) if module is None else module(x)


def tanh(x: Any, module: Callable[[Any], Any] | None = None) -> Any:
    """``module(x)`` or ``jnp.tanh`` on floats; torch's quantized tanh on a QTensor:
    output scale ``2/256``, zero point ``128`` (quint8) or ``0`` (qint8)."""
    if isinstance(x, QTensor):
        zero_point = 128 if x.dtype is quint8 else 0
        qF._input(x, "quantized::tanh")
        return qF.requantize(jnp.tanh(qF.dequantize_like_torch(x)), jnp.float32(2.0 / 256),
                             jnp.int32(zero_point), x.dtype)
    return jnp.tanh(x) if module is None else module(x)


def quantized_zeros(shape: Sequence[int], scale: Any, zero_point: Any, dtype: Any
                    ) -> QTensor:
    """``torch.quantize_per_tensor(torch.zeros(shape), scale, zero_point, dtype)``."""
    return quantize_per_tensor(jnp.zeros(tuple(shape), jnp.float32), scale, zero_point,
                               dtype)


def mean(x: Any, axis: int) -> Any:
    """``x.mean(dim=axis)``: torch's quantized mean on a QTensor (same qparams), the
    float mean (sum, then an exact division) otherwise."""
    if isinstance(x, QTensor):
        return x.mean(dim=axis)
    return exact_divide(jnp.sum(x, axis=axis), jnp.float32(x.shape[axis]))
