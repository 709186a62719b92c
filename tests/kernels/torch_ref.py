"""torch (x86 / fbgemm engine) references for the kernel tests.

Everything here builds torch's own quantized modules / ops from the same integer weights
and qparams that jaxq is given, so expected values always come from the installed torch.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
warnings.filterwarnings("ignore", message=".*deprecated.*")
torch.backends.quantized.engine = "x86"
torch.set_num_threads(1)


def random_int_weight(rng, n, k, per_channel, affine=False):
    """(values int8 (N, K), scale, zero_point or None, torch qint8 tensor)."""
    values = rng.integers(-128, 128, (n, k)).astype(np.int8)
    if per_channel:
        scale = rng.uniform(0.002, 0.02, n).astype(np.float32)
        zp = rng.integers(-8, 9, n).astype(np.int64) if affine else np.zeros(n, np.int64)
        wq = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(values), torch.from_numpy(scale.astype(np.float64)),
            torch.from_numpy(zp), 0)
        return values, scale, (zp.astype(np.int32) if affine else None), wq
    scale = np.float32(rng.uniform(0.002, 0.02))
    zp = int(rng.integers(-8, 9)) if affine else 0
    wq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(values), float(scale), zp)
    return values, scale, (np.int32(zp) if affine else None), wq


def static_linear(xq_u8, x_scale, x_zp, wq, bias, out_scale, out_zp, relu=False):
    """torch.ao.nn.quantized.Linear (or LinearReLU) output int_repr, uint8 (M, N)."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    n, k = wq.shape
    module = (nniq.LinearReLU if relu else nnq.Linear)(k, n)
    module.set_weight_bias(wq, None if bias is None else torch.from_numpy(bias))
    module.scale, module.zero_point = float(out_scale), int(out_zp)
    x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq_u8), float(x_scale),
                                                int(x_zp))
    return module(x).int_repr().numpy()


def dynamic_linear(x, wq, bias, relu=False):
    """torch.ao.nn.quantized.dynamic.Linear (LinearReLU) float output (M, N)."""
    import torch.ao.nn.intrinsic.quantized.dynamic as nniqd
    import torch.ao.nn.quantized.dynamic as nnqd

    n, k = wq.shape
    module = (nniqd.LinearReLU if relu else nnqd.Linear)(k, n)
    module.set_weight_bias(wq, None if bias is None else torch.from_numpy(bias))
    return module(torch.from_numpy(x)).detach().numpy()


def static_conv2d(xq_nhwc, x_scale, x_zp, wq_oihw, bias, out_scale, out_zp, stride,
                  padding, dilation, groups=1, relu=False):
    """torch.ao.nn.quantized.Conv2d (ConvReLU2d) output int_repr as NHWC uint8.

    Runs on the fbgemm engine: the x86 engine sends some convs (e.g. 3x3, 64 -> 64,
    56x56) to oneDNN, whose requantization rounds ~1e-5 of the outputs differently.
    """
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        return _static_conv2d(nniq, nnq, xq_nhwc, x_scale, x_zp, wq_oihw, bias, out_scale,
                              out_zp, stride, padding, dilation, groups, relu)
    finally:
        torch.backends.quantized.engine = previous


def _static_conv2d(nniq, nnq, xq_nhwc, x_scale, x_zp, wq_oihw, bias, out_scale, out_zp,
                   stride, padding, dilation, groups, relu):

    o, c_per_group, kh, kw = wq_oihw.shape
    cls = nniq.ConvReLU2d if relu else nnq.Conv2d
    module = cls(c_per_group * groups, o, (kh, kw), stride=stride, padding=padding,
                 dilation=dilation, groups=groups)
    module.set_weight_bias(wq_oihw, None if bias is None else torch.from_numpy(bias))
    module.scale, module.zero_point = float(out_scale), int(out_zp)
    x = torch.from_numpy(np.ascontiguousarray(xq_nhwc.transpose(0, 3, 1, 2)))
    x = torch._make_per_tensor_quantized_tensor(x, float(x_scale), int(x_zp))
    return module(x).int_repr().numpy().transpose(0, 2, 3, 1)
