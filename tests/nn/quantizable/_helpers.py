"""Shared pieces of the quantizable-module tests: torch's and jaxq's eager flows side by
side (same weights, same calibration data) and the comparisons."""

import warnings

import numpy as np
import torch
import torch.ao.quantization as tq

import jaxq
from jaxq.eager._tree import named_modules
from jaxq.observer import MinMaxObserver, default_per_channel_weight_observer
from jaxq.qconfig import QConfig

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

torch.backends.quantized.engine = "x86"


def qconfigs(kind):
    """(torch qconfig, jaxq qconfig): torch's x86 default (histogram) or a cheaper
    MinMax(reduce_range) + per-channel weight one."""
    if kind == "x86":
        return tq.get_default_qconfig("x86"), jaxq.qconfig.get_default_qconfig("x86")
    torch_qconfig = tq.QConfig(activation=tq.MinMaxObserver.with_args(reduce_range=True),
                               weight=tq.default_per_channel_weight_observer)
    jaxq_qconfig = QConfig(activation=MinMaxObserver.with_args(reduce_range=True),
                           weight=default_per_channel_weight_observer)
    return torch_qconfig, jaxq_qconfig


def t2n(x):
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_float_close(jaxq_out, torch_out, atol=2e-6):
    """Nested tuples of float arrays, tight tolerance (summation order differs)."""
    if isinstance(torch_out, (tuple, list)):
        assert len(jaxq_out) == len(torch_out)
        for a, b in zip(jaxq_out, torch_out):
            assert_float_close(a, b, atol)
        return
    if torch_out is None:
        assert jaxq_out is None
        return
    np.testing.assert_allclose(np.asarray(jaxq_out), t2n(torch_out), rtol=1e-5, atol=atol)


def assert_observers_match(jaxq_model, torch_model):
    """Every jaxq observer's qparams equal torch's observer at the same module path."""
    torch_modules = dict(torch_model.named_modules())
    count = 0
    for name, module in named_modules(jaxq_model):
        post = vars(module).get("activation_post_process")
        if post is None or not hasattr(post, "calculate_qparams"):
            continue
        torch_post = torch_modules[name].activation_post_process
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_scale, t_zp = torch_post.calculate_qparams()
            j_scale, j_zp = post.calculate_qparams()
        np.testing.assert_allclose(np.asarray(j_scale).reshape(-1), t2n(t_scale).reshape(-1),
                                   rtol=1e-5, err_msg=name)
        np.testing.assert_array_equal(np.asarray(j_zp).reshape(-1),
                                      t2n(t_zp).reshape(-1), err_msg=name)
        count += 1
    assert count > 0
    return count


def assert_quantized_close(jaxq_out, torch_out, min_exact=0.97):
    """QTensors vs torch quantized tensors: same qparams (to float32 rounding), integers
    within one quantum and nearly all equal (see the module docs of the tests for why)."""
    if isinstance(torch_out, (tuple, list)):
        for a, b in zip(jaxq_out, torch_out):
            assert_quantized_close(a, b, min_exact)
        return
    assert torch_out.is_quantized and isinstance(jaxq_out, jaxq.QTensor)
    np.testing.assert_allclose(float(jaxq_out.scale), torch_out.q_scale(), rtol=1e-5)
    assert int(jaxq_out.zero_point) == torch_out.q_zero_point()
    a = np.asarray(jaxq_out.int_repr(), np.int32)
    b = torch_out.int_repr().numpy().astype(np.int32)
    assert a.shape == b.shape
    diff = np.abs(a - b)
    assert diff.max() <= 1, diff.max()
    assert (diff == 0).mean() >= min_exact, (diff == 0).mean()


def copy_torch_minmax_ranges(jaxq_model, torch_model):
    """Gives every jaxq MinMax observer torch's ``min_val`` / ``max_val`` (they agree to
    float32 rounding already), so that both convert with identical qparams and the
    quantized arithmetic itself can be compared bit for bit."""
    import jax.numpy as jnp
    torch_modules = dict(torch_model.named_modules())
    for name, module in named_modules(jaxq_model):
        post = vars(module).get("activation_post_process")
        if post is None or not hasattr(post, "calculate_qparams"):
            continue
        torch_post = torch_modules[name].activation_post_process
        state = dict(post.state.get_value())
        state["min_val"] = jnp.float32(float(torch_post.min_val))
        state["max_val"] = jnp.float32(float(torch_post.max_val))
        post.state.set_value(state)
