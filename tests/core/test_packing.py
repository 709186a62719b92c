"""Sub-byte packing against torch's quint4x2 / quint2x4 storage."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxq.core.packing import pack, packed_size, unpack  # noqa: E402

warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")

TORCH_DTYPES = {4: torch.quint4x2, 2: torch.quint2x4}


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("shape", [(1,), (3,), (4,), (7,), (2, 3), (3, 3, 3), (2, 4, 8)])
def test_flat_packing_matches_torch_int_repr(rng, bits, shape):
    values = rng.integers(0, 2**bits, size=shape).astype(np.uint8)
    # Scale 1, zero point 0: torch stores the values themselves.
    expected = torch.quantize_per_tensor(torch.from_numpy(values.astype(np.float32)), 1.0, 0,
                                         TORCH_DTYPES[bits]).int_repr().numpy()
    packed = pack(jnp.asarray(values).reshape(-1), bits)
    np.testing.assert_array_equal(np.asarray(packed), expected)
    assert packed.shape == (packed_size(values.size, bits),)
    np.testing.assert_array_equal(np.asarray(unpack(packed, bits, values.size)),
                                  values.reshape(-1))


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((3, 5), 0), ((2, 7, 3), 1),
                                        ((4, 8), 1)])
def test_round_trip_along_axis(rng, bits, shape, axis):
    values = rng.integers(0, 2**bits, size=shape).astype(np.uint8)
    packed = pack(jnp.asarray(values), bits, axis=axis)
    expected_shape = list(shape)
    expected_shape[axis] = -(-shape[axis] * bits // 8)
    assert packed.shape == tuple(expected_shape)
    assert packed.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(unpack(packed, bits, shape[axis], axis=axis)),
                                  values)


def test_rows_pack_independently_and_even_rows_match_flat(rng):
    values = rng.integers(0, 16, size=(3, 8)).astype(np.uint8)
    rows = pack(jnp.asarray(values), 4)
    np.testing.assert_array_equal(np.asarray(rows).reshape(-1),
                                  np.asarray(pack(jnp.asarray(values).reshape(-1), 4)))
    odd = rng.integers(0, 16, size=(2, 3)).astype(np.uint8)
    packed = np.asarray(pack(jnp.asarray(odd), 4))
    # Each row is padded on its own: the high nibble of a row's last byte is zero.
    assert packed.shape == (2, 2) and np.all(packed[:, -1] >> 4 == 0)


@pytest.mark.parametrize("bits", [2, 4])
def test_signed_round_trip(rng, bits):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    values = rng.integers(lo, hi + 1, size=(4, 6)).astype(np.int8)
    packed = pack(jnp.asarray(values), bits)
    out = unpack(packed, bits, 6, signed=True)
    assert out.dtype == jnp.int8
    np.testing.assert_array_equal(np.asarray(out), values)


def test_jit_and_no_recompile(rng):
    traces = []

    @jax.jit
    def round_trip(values):
        traces.append(1)
        return unpack(pack(values, 4), 4, values.shape[-1])

    for _ in range(2):
        values = rng.integers(0, 16, size=(3, 5)).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(round_trip(jnp.asarray(values))), values)
    assert len(traces) == 1


def test_bad_input():
    with pytest.raises(ValueError, match="bits"):
        pack(jnp.zeros(4, jnp.uint8), 3)
    with pytest.raises(TypeError, match="values"):
        pack(jnp.zeros(4, jnp.float32), 4)
    with pytest.raises(ValueError, match="values"):
        pack(jnp.zeros((), jnp.uint8), 4)
    with pytest.raises(TypeError, match="packed"):
        unpack(jnp.zeros(4, jnp.int8), 4, 8)
    with pytest.raises(ValueError, match="size"):
        unpack(jnp.zeros(4, jnp.uint8), 4, 9)
    with pytest.raises(ValueError, match="axis"):
        pack(jnp.zeros((2, 2), jnp.uint8), 4, axis=2)
