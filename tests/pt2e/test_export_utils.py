"""jaxq.pt2e.export_utils vs torchao.quantization.pt2e.export_utils."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxq.pt2e as pt2e
from jaxq.fx.graph import capture
from jaxq.qconfig import default_per_channel_qconfig
from jaxq.qconfig_mapping import QConfigMapping
from jaxq.quantize_fx import prepare_fx

tao = pytest.importorskip("torchao.quantization.pt2e")
torch_is_exported = pytest.importorskip(
    "torchao.quantization.pt2e.export_utils").model_is_exported


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.dropout(self.bn(self.fc(x)))


class FlaxNet(nnx.Module):
    def __init__(self):
        self.fc = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
        self.bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
        self.dropout = nnx.Dropout(0.5, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.dropout(self.bn(self.fc(x)))


def test_model_is_exported_like_torch():
    x = torch.randn(4, 3)
    exported = torch.export.export(TorchNet().eval(), (x,)).module()
    traced = torch.fx.symbolic_trace(TorchNet())
    assert torch_is_exported(exported) and not torch_is_exported(traced)
    assert not torch_is_exported(TorchNet())

    xj = jnp.ones((4, 3))
    model = FlaxNet()
    assert pt2e.model_is_exported(capture(model, (xj,)))
    eval_model = nnx.clone(model)
    eval_model.eval()
    prepared = prepare_fx(eval_model,
                          QConfigMapping().set_global(default_per_channel_qconfig), (xj,))
    assert pt2e.model_is_exported(prepared)
    assert not pt2e.model_is_exported(model)
    assert not pt2e.model_is_exported(object())


def test_move_to_eval_and_train_like_torch(rng):
    x = rng.standard_normal((6, 3)).astype(np.float32)
    torch_model = TorchNet()
    torch_model.bn.running_mean.uniform_(-1, 1)
    exported = torch.export.export(torch_model, (torch.from_numpy(x),)).module()
    tao.move_exported_model_to_eval(exported)
    torch_eval = exported(torch.from_numpy(x)).detach().numpy()

    model = FlaxNet()
    sd = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    model.fc.kernel[...] = jnp.asarray(sd["fc.weight"].T)
    model.fc.bias[...] = jnp.asarray(sd["fc.bias"])
    model.bn.mean[...] = jnp.asarray(sd["bn.running_mean"])
    gm = capture(model, (jnp.asarray(x),))  # captured in train mode
    assert pt2e.move_exported_model_to_eval(gm) is gm
    assert gm.root.bn.use_running_average and gm.root.dropout.deterministic
    # torch's BatchNorm eps (1e-5) equals Flax's default epsilon.
    np.testing.assert_allclose(gm(jnp.asarray(x)), torch_eval, rtol=1e-5, atol=1e-5)
    pt2e.move_exported_model_to_eval(gm)  # idempotent
    np.testing.assert_allclose(gm(jnp.asarray(x)), torch_eval, rtol=1e-5, atol=1e-5)
    pt2e.move_exported_model_to_train(gm)
    assert not gm.root.bn.use_running_average and not gm.root.dropout.deterministic
    out = np.asarray(gm(jnp.asarray(x)))
    assert np.mean(out == 0) > 0.2  # dropout is active again
    assert pt2e.allow_exported_model_train_eval(gm) is gm
    gm.eval()  # NNX's own switch works on a captured model
    assert gm.root.bn.use_running_average and gm.root.dropout.deterministic


def test_wrapper_module_and_errors():
    wrapped = pt2e.WrapperModule(jax.nn.relu)
    np.testing.assert_array_equal(wrapped(jnp.array([-1.0, 1.0])), [0.0, 1.0])
    gm = capture(wrapped, (jnp.array([-1.0, 1.0]),))
    assert pt2e.model_is_exported(gm)
    with pytest.raises(TypeError, match="fn must be callable"):
        pt2e.WrapperModule(3)
    for fn in (pt2e.move_exported_model_to_eval, pt2e.move_exported_model_to_train,
               pt2e.allow_exported_model_train_eval):
        with pytest.raises(TypeError, match="captured model"):
            fn(FlaxNet())
