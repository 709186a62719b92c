"""jaxq.nn.quantized.ops vs torch.ops.quantized (bit-exact except float-reduction ops)."""

import numpy as np
import pytest
import torch

from jaxq.nn.quantized import ops
from tests.nn.quantized.torch_helpers import assert_qtensor_matches, f32, random_qtensor

Q = torch.ops.quantized
CASES = {"quint8": (120, 60), "qint8": (3, -7)}


@pytest.fixture(params=sorted(CASES))
def operands(request, rng):
    dtype = request.param
    za, zb = CASES[dtype]
    a = random_qtensor(rng, (2, 5, 7, 9), 0.05, za, dtype)
    b = random_qtensor(rng, (2, 5, 7, 9), 0.07, zb, dtype)
    return a, b, za


def test_binary_ops_vs_torch(operands):
    (ta, ja), (tb, jb), za = operands
    assert_qtensor_matches(ops.add(ja, jb, f32(0.09), za), Q.add(ta, tb, f32(0.09), za))
    assert_qtensor_matches(ops.add_relu(ja, jb, f32(0.09), za),
                           Q.add_relu(ta, tb, f32(0.09), za))
    assert_qtensor_matches(ops.mul(ja, jb, f32(0.3), za), Q.mul(ta, tb, f32(0.3), za))
    assert_qtensor_matches(ops.mul_relu(ja, jb, f32(0.3), za),
                           Q.mul_relu(ta, tb, f32(0.3), za))
    assert_qtensor_matches(ops.cat([ja, jb], f32(0.08), za, dim=-1),
                           Q.cat([ta, tb], 1, f32(0.08), za))


@pytest.mark.parametrize("scalar", [0.3, -2.0, 100.0, -100.0, 7.0])
def test_add_scalar_qparams_rule(operands, scalar):
    (ta, ja), _, _ = operands
    got, expected = ops.add_scalar(ja, scalar), Q.add_scalar(ta, scalar)
    np.testing.assert_allclose(float(got.scale), expected.q_scale(), rtol=1e-6)
    assert int(got.zero_point) == expected.q_zero_point()
    np.testing.assert_array_equal(np.asarray(got.int_repr()).transpose(0, 3, 1, 2),
                                  expected.int_repr().numpy())


@pytest.mark.parametrize("scalar", [0.3, -2.0, 0.0])
def test_mul_scalar_qparams_rule(operands, scalar):
    (ta, ja), _, _ = operands
    got, expected = ops.mul_scalar(ja, scalar), Q.mul_scalar(ta, scalar)
    np.testing.assert_allclose(float(got.scale), expected.q_scale(), rtol=1e-6)
    assert int(got.zero_point) == expected.q_zero_point()
    np.testing.assert_array_equal(np.asarray(got.int_repr()).transpose(0, 3, 1, 2),
                                  expected.int_repr().numpy())


def test_batch_norm_vs_torch(rng, operands):
    (ta, ja), _, za = operands
    w, b, m = (rng.normal(size=5).astype(np.float32) for _ in range(3))
    v = rng.uniform(0.5, 2, size=5).astype(np.float32)
    args = [torch.tensor(t) for t in (w, b, m, v)]
    assert_qtensor_matches(ops.batch_norm(ja, w, b, m, v, 1e-5, f32(0.04), za),
                           Q.batch_norm2d(ta, *args, 1e-5, f32(0.04), za))
    assert_qtensor_matches(ops.batch_norm(ja, w, b, m, v, 1e-5, f32(0.04), za, relu=True),
                           Q.batch_norm2d_relu(ta, *args, 1e-5, f32(0.04), za))


def test_float_fallback_ops_vs_torch(rng, operands):
    (ta, ja), _, za = operands
    w, b = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    softmax_zp = 0 if ta.dtype == torch.quint8 else -128
    assert_qtensor_matches(ops.softmax(ja, -1, 1 / 256, softmax_zp),
                           Q.softmax(ta, 1, 1 / 256, softmax_zp), 0.99)
    assert_qtensor_matches(ops.group_norm(ja, 5, w, b, 1e-5, f32(0.03), za),
                           Q.group_norm(ta, 5, torch.tensor(w), torch.tensor(b), 1e-5,
                                        f32(0.03), za), 0.99)
    assert_qtensor_matches(ops.instance_norm(ja, w, b, 1e-5, f32(0.03), za),
                           Q.instance_norm(ta, torch.tensor(w), torch.tensor(b), 1e-5,
                                           f32(0.03), za), 0.99)


def test_layer_norm_and_matmul_vs_torch(rng):
    ta, ja = random_qtensor(rng, (3, 6), 0.05, 120)
    tb, jb = random_qtensor(rng, (6, 4), 0.05, 120)
    assert_qtensor_matches(ops.layer_norm(ja, (6,), None, None, 1e-5, f32(0.03), 128),
                           Q.layer_norm(ta, [6], None, None, 1e-5, f32(0.03), 128), 0.99)
    assert_qtensor_matches(ops.matmul(ja, jb, f32(0.2), 100),
                           Q.matmul(ta, tb, f32(0.2), 100), 0.99)


def test_bad_input(operands):
    (_, ja), _, _ = operands
    with pytest.raises(TypeError, match="Could not run 'quantized::add'"):
        ops.add(np.ones(3), ja, 0.1, 0)
    with pytest.raises(TypeError, match="must be a Python number"):
        ops.add_scalar(ja, "1")
    with pytest.raises(TypeError, match="list of QTensors"):
        ops.cat(ja, 0.1, 0)
