"""Small Flax models shared by the jaxq.fx unit tests."""

import jax
import jax.numpy as jnp
from flax import nnx


class ConvBNReLU(nnx.Module):
    def __init__(self, train: bool = False):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
        self.bn = nnx.BatchNorm(4, use_running_average=not train, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


class Block(nnx.Module):
    def __init__(self):
        self.fc = nnx.Linear(4, 4, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return jax.nn.relu(self.fc(x) + x)


class Net(nnx.Module):
    def __init__(self):
        self.block = Block()
        self.head = nnx.Linear(4, 2, rngs=nnx.Rngs(1))

    def __call__(self, x):
        y = self.block(x)
        return self.head(jax.nn.relu(y)).reshape(-1)


class TwoUsers(nnx.Module):
    """The conv output feeds both the batch norm and the output: no conv-bn fusion."""

    def __init__(self):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
        self.bn = nnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))

    def __call__(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def image(batch: int = 2):
    return jax.random.normal(jax.random.key(0), (batch, 6, 6, 3))


def vector(batch: int = 3):
    return jax.random.normal(jax.random.key(1), (batch, 4)) * 2.0


def ones(shape):
    return jnp.ones(shape)
