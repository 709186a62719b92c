"""jaxq quickstart: quantize one array at three granularities, then train through fake-quant.

Run: bash scripts/demo.sh   (or .venv/bin/python examples/quickstart.py)
"""

import jax
import jax.numpy as jnp

import jaxq


def sqnr_db(reference: jax.Array, approximation: jax.Array) -> float:
    """Signal-to-quantization-noise ratio in dB (higher is better)."""
    noise = jnp.linalg.norm(reference - approximation)
    return float(20 * jnp.log10(jnp.linalg.norm(reference) / noise))


def main() -> None:
    key = jax.random.key(0)
    # A weight-like matrix whose rows have very different ranges: the case where finer
    # granularity pays off.
    row_scales = jnp.logspace(-2, 1, 256)[:, None]
    weight = jax.random.normal(key, (256, 512)) * row_scales

    print("int8 symmetric quantization of a (256, 512) matrix")
    for label, granularity in [("per-tensor", jaxq.PerTensor()),
                               ("per-channel", jaxq.PerAxis(0)),
                               ("per-group(64)", jaxq.PerGroup(64))]:
        block_size = jaxq.get_block_size(weight.shape, granularity)
        scale, zero_point = jaxq.choose_qparams_affine(
            weight, jaxq.MappingType.SYMMETRIC, block_size, jaxq.int8)
        q = jaxq.quantize_affine(weight, block_size, scale, zero_point, jaxq.int8)
        restored = jaxq.dequantize_affine(q, block_size, scale, zero_point, jaxq.int8)
        print(f"  {label:>14}: {scale.size:6d} scales, SQNR {sqnr_db(weight, restored):6.2f} dB")

    # Fake quantization is differentiable: straight-through inside the range, zero outside.
    x = jnp.array([-3.0, -0.5, 0.0, 0.26, 1.0, 3.0])
    block_size = x.shape

    def loss(x):
        y = jaxq.fake_quantize_affine(x, block_size, jnp.array(0.01), jnp.array(0), jaxq.int8)
        return jnp.sum(y**2)

    value, grad = jax.value_and_grad(loss)(x)
    print("fake-quant (scale 0.01, int8) loss", round(float(value), 4))
    print("  gradient:", [round(float(g), 4) for g in grad],
          "(zero where |x| > 1.27: clipped)")


if __name__ == "__main__":
    main()
