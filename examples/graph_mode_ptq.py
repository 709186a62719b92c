"""Graph-mode post-training quantization and QAT of an unmodified Flax NNX model.

No QuantStubs and no qconfig attributes: ``prepare_fx`` captures the model into a graph,
fuses Conv+BatchNorm+ReLU, inserts observers as the QConfigMapping and the BackendConfig
say; ``convert_fx`` swaps in int8 modules. The same model then goes through
``prepare_qat_fx`` and a few optax steps.

Run: python examples/graph_mode_ptq.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxq.qconfig_mapping import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
from jaxq.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx


class SmallCNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(8, rngs=rngs)
        self.conv2 = nnx.Conv(8, 8, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(8, rngs=rngs)
        self.fc = nnx.Linear(8 * 4 * 4, 10, rngs=rngs)

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = jax.nn.relu(self.bn2(self.conv2(y)) + y)      # residual add, then relu
        y = nnx.max_pool(y, (2, 2), (2, 2))
        return self.fc(y.reshape(y.shape[0], -1))


def main() -> None:
    key = jax.random.key(0)
    x = jax.random.normal(key, (32, 8, 8, 1))
    model = SmallCNN(nnx.Rngs(0))

    # --- post-training static quantization --------------------------------------------
    model.eval()
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x[:4],))
    prepared.print_tabular()
    calibrate = nnx.jit(lambda m, batch: m(batch))
    for i in range(4):
        calibrate(prepared, x[i * 8:(i + 1) * 8])
    quantized = convert_fx(prepared)
    quantized.print_tabular()
    run = nnx.jit(lambda m, batch: m(batch))
    error = jnp.abs(run(quantized, x[:4]) - model(x[:4])).max()
    print(f"int8 vs float max |error|: {float(error):.4f}")

    # --- quantization-aware training --------------------------------------------------
    model.train()
    qat = prepare_qat_fx(model, get_default_qat_qconfig_mapping("x86"), (x[:8],))
    labels = jax.random.randint(key, (32,), 0, 10)
    optimizer = nnx.Optimizer(qat, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt, batch, target):
        def loss_fn(mm):
            logits = mm(batch)
            return optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        opt.update(m, grads)
        return loss

    for epoch in range(5):
        loss = step(qat, optimizer, x[:8], labels[:8])
        print(f"QAT step {epoch}: loss {float(loss):.4f}")
    qat.eval()
    quantized_qat = convert_fx(qat)
    print("QAT model converted:", type(quantized_qat.root.conv1).__name__)


if __name__ == "__main__":
    main()
