"""Quantization-aware training on scikit-learn's digits, the eager way (README demo).

A small CNN (8x8x1 images, two Conv-BN-ReLU blocks, max pooling, a Linear classifier)
is trained in float with optax, then trained again from the same initialization with
``fuse_modules_qat -> prepare_qat`` (fake-quantized weights and activations, batch norm
folded into the weights as torch's ``_ConvBnNd`` does), and finally ``convert``-ed to an
int8 model that runs on quantized tensors. Prints float vs int8 test accuracy, model
bytes and jitted latency of both.

Run: ``python examples/qat_digits.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jaxq.nn as jnn
from jaxq.core.qtensor import QTensor
from jaxq.eager import DeQuantStub, QuantStub, convert, fuse_modules_qat, prepare_qat
from jaxq.fake_quantize import disable_observer
from jaxq.nn.intrinsic.qat import freeze_bn_stats
from jaxq.qconfig import get_default_qat_qconfig


def max_pool_2x2(x):
    """2x2 max pool on float NHWC arrays or per-tensor QTensors (max of the integers,
    same qparams, as torch's quantized max_pool2d)."""
    if isinstance(x, QTensor):
        pooled = nnx.max_pool(x.int_repr().astype(jnp.int32), (2, 2), (2, 2))
        return QTensor.from_int_values(pooled, x.q_scale(), x.q_zero_point(), x.dtype)
    return nnx.max_pool(x, (2, 2), (2, 2))


class DigitsCNN(nnx.Module):
    """quant -> [conv-bn-relu] x 2 -> max pool -> linear -> dequant, channels-last."""

    def __init__(self, rngs: nnx.Rngs, width: int = 16):
        self.quant = QuantStub()
        self.conv1 = nnx.Conv(1, width, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.relu1 = jnn.ReLU()
        self.conv2 = nnx.Conv(width, 2 * width, (3, 3), padding="SAME", use_bias=False,
                              rngs=rngs)
        self.bn2 = nnx.BatchNorm(2 * width, momentum=0.9, rngs=rngs)
        self.relu2 = jnn.ReLU()
        self.fc = nnx.Linear(2 * width * 4 * 4, 10, rngs=rngs)
        self.dequant = DeQuantStub()

    def __call__(self, x):
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        return self.dequant(self.fc(x))


FUSE = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"]]


def load_data(seed: int = 0):
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # (N, 8, 8, 1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int32), test_size=0.25, random_state=seed,
        stratify=digits.target)
    mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std, y_train), ((x_test - mean) / std, y_test)


def train(model: nnx.Module, data, epochs: int, batch_size: int, learning_rate: float,
          seed: int, on_epoch=None) -> None:
    """Adam on cross-entropy; one compiled step for the whole run."""
    x_train, y_train = data
    optimizer = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    order_rng = np.random.default_rng(seed)
    steps_per_epoch = len(x_train) // batch_size
    for epoch in range(epochs):
        if on_epoch is not None:
            on_epoch(epoch, model)
        order = order_rng.permutation(len(x_train))
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            step(model, optimizer, jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]))


def accuracy(model: nnx.Module, data) -> float:
    x, y = data
    logits = nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x))
    return float((np.asarray(logits).argmax(-1) == y).mean())


def model_bytes(model: nnx.Module) -> int:
    """Bytes of every array in the model's state (weights, qparams, statistics)."""
    return int(sum(np.asarray(leaf).nbytes
                   for leaf in jax.tree.leaves(nnx.state(model))))


def latency_ms(model: nnx.Module, x: jax.Array, repeats: int = 50, rounds: int = 5) -> float:
    """Best-of-rounds mean time of a jitted forward pass, as a server would run it: the
    model split once into (graphdef, state) and a plain ``jax.jit`` over the state, so
    NNX's per-call Python bookkeeping (``nnx.jit`` splits and merges the module on every
    call, ~0.5 ms for these models) is not timed."""
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, v: nnx.merge(graphdef, s)(v))
    jax.block_until_ready(forward(state, x))  # compile
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            out = forward(state, x)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e3


def run(epochs: int = 12, qat_epochs: int | None = None, batch_size: int = 64,
        learning_rate: float = 3e-3, seed: int = 0, verbose: bool = True) -> dict:
    """Trains float and QAT models the same way; returns accuracies, bytes, latencies."""
    qat_epochs = epochs if qat_epochs is None else qat_epochs
    train_data, test_data = load_data(seed)

    float_model = DigitsCNN(nnx.Rngs(seed))
    qat_model = nnx.clone(float_model)  # same initialization for both
    float_model.train()
    train(float_model, train_data, epochs, batch_size, learning_rate, seed)
    float_model.eval()

    qat_model.train()
    qat_model.qconfig = get_default_qat_qconfig("x86")
    qat_model = fuse_modules_qat(qat_model, FUSE)
    qat_model = prepare_qat(qat_model)

    def schedule(epoch, model):
        # torch's recipe: freeze observers, then BN statistics, for the last epochs.
        if epoch == max(qat_epochs - 3, 1):
            disable_observer(model)
        if epoch == max(qat_epochs - 2, 1):
            freeze_bn_stats(model)

    train(qat_model, train_data, qat_epochs, batch_size, learning_rate, seed, schedule)
    qat_model.eval()
    int8_model = convert(qat_model)

    x_bench = jnp.asarray(test_data[0][:256])
    result = {
        "float_accuracy": accuracy(float_model, test_data),
        "int8_accuracy": accuracy(int8_model, test_data),
        "float_bytes": model_bytes(float_model),
        "int8_bytes": model_bytes(int8_model),
        "float_latency_ms": latency_ms(float_model, x_bench),
        "int8_latency_ms": latency_ms(int8_model, x_bench),
    }
    if verbose:
        print(f"test accuracy   float {result['float_accuracy']:.2%}   "
              f"int8 {result['int8_accuracy']:.2%}")
        print(f"model bytes     float {result['float_bytes']:,}   "
              f"int8 {result['int8_bytes']:,}")
        print(f"jitted latency  float {result['float_latency_ms']:.3f} ms   "
              f"int8 {result['int8_latency_ms']:.3f} ms   (batch of {x_bench.shape[0]})")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    run(epochs=args.epochs, seed=args.seed)
    print(f"total {time.perf_counter() - start:.1f} s")
