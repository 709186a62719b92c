"""Shared helpers of the nn QAT tests: matching jaxq/torch qconfigs, weight copies
between Flax (channels-last, kernel ``(*k, in, out)``) and torch (NCHW, ``(out, in, *k)``)."""

from __future__ import annotations

import numpy as np
import torch
from torch.ao.quantization import QConfig as TorchQConfig
from torch.ao.quantization import fake_quantize as tfq
from torch.ao.quantization import qconfig as tqc

import jaxq.fake_quantize as jfq
from jaxq import qconfig as jqc
from jaxq.nn.layout import kernel_to_torch

# name -> (jaxq qconfig, torch qconfig): the same observers/fake-quants on both sides.
QCONFIGS = {
    "x86_fused_per_channel": (jqc.get_default_qat_qconfig("x86"),
                              tqc.get_default_qat_qconfig("x86")),
    "per_tensor": (jqc.default_qat_qconfig, tqc.default_qat_qconfig),
    "per_channel": (jqc.QConfig(activation=jfq.default_fake_quant,
                                weight=jfq.default_per_channel_weight_fake_quant),
                    TorchQConfig(activation=tfq.default_fake_quant,
                                 weight=tfq.default_per_channel_weight_fake_quant)),
}


def t(x) -> torch.Tensor:
    """A float32 torch tensor copy of ``x``."""
    return torch.tensor(np.array(x, dtype=np.float32))


def to_nchw(x) -> torch.Tensor:
    """Channels-last array -> torch channels-first tensor."""
    x = np.asarray(x, np.float32)
    return torch.tensor(np.moveaxis(x, -1, 1).copy())


def from_nchw(x: torch.Tensor) -> np.ndarray:
    """torch channels-first tensor -> channels-last numpy array."""
    return np.moveaxis(x.detach().numpy(), 1, -1)


def torch_weight(kernel) -> torch.Tensor:
    """Flax kernel -> torch weight tensor."""
    return torch.tensor(np.asarray(kernel_to_torch(np.asarray(kernel))).copy())


def flax_grad(weight_grad: torch.Tensor) -> np.ndarray:
    """torch weight gradient -> Flax kernel layout."""
    w = weight_grad.detach().numpy()
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def copy_conv_to_torch(jmod, tmod) -> None:
    """Copies kernel/bias (and, for fused BN modules, the BN) of jaxq ``jmod`` into
    torch ``tmod``."""
    with torch.no_grad():
        tmod.weight.copy_(torch_weight(jmod.kernel.get_value()))
        if jmod.bias is not None:
            tmod.bias.copy_(t(jmod.bias.get_value()))
        bn = getattr(jmod, "bn", None)
        if bn is not None:
            tmod.bn.weight.copy_(t(bn.scale.get_value()))
            tmod.bn.bias.copy_(t(bn.bias.get_value()))
            tmod.bn.running_mean.copy_(t(bn.mean.get_value()))
            tmod.bn.running_var.copy_(t(bn.var.get_value()))


def assert_close(actual, expected, rtol=2e-5, atol=2e-5, what=""):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol,
                               atol=atol, err_msg=what)


def make_train_step(counter: list):
    """An ``nnx.jit`` step returning ``(y, grad_module, grad_x)`` of
    ``sum(module(x) * g)``; ``counter[0]`` counts traces."""
    import jax.numpy as jnp
    from flax import nnx

    def loss(module, x, g):
        y = module(x)
        return jnp.sum(y * g), y

    @nnx.jit
    def step(module, x, g):
        counter[0] += 1
        (_, y), (grad_module, grad_x) = nnx.value_and_grad(
            loss, argnums=(0, 1), has_aux=True)(module, x, g)
        return y, grad_module, grad_x

    return step


def torch_step(tmod, x, g, channels_last_to_torch):
    """torch forward/backward of ``sum(tmod(x) * g)``: ``(y, grad_x)`` in jaxq layout."""
    xt = channels_last_to_torch(x).requires_grad_(True)
    tmod.zero_grad()
    yt = tmod(xt)
    (yt * channels_last_to_torch(g)).sum().backward()
    return yt, xt.grad


def jit_apply(module, x):
    """``module(x)`` under ``nnx.jit`` (eager JAX compiles every op separately, which
    is slower for these small modules than one compiled call)."""
    return _jitted_apply(module, x)


def _apply(module, x):
    return module(x)


from flax import nnx as _nnx  # noqa: E402

_jitted_apply = _nnx.jit(_apply)
