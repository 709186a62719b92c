"""Block sizes of the GPU kernels, per shape class, in one small table.

Every kernel picks a :class:`BlockConfig` from the table below by its M (the token /
batch dimension), then clamps the N and K blocks to the problem so that small or odd
shapes do not pay for a mostly-masked tile. Callers can always pass ``block=`` to
override the choice (the benchmark script sweeps a few alternatives and prints the best,
so the table can be re-tuned from one GPU run).

Constraints the entries respect (Pallas Triton lowering on Hopper):

* every block dimension is a power of two;
* ``tl.dot`` needs each dot dimension >= 16, and int8 dots need ``block_k >= 32``;
* Triton emits Hopper ``wgmma`` for int8 only when ``block_m % 64 == 0``,
  ``block_k >= 32`` and ``num_warps % 4 == 0`` - so every int8 GEMM entry with M >= 64
  uses ``block_m`` in {64, 128} and 4 or 8 warps;
* shared memory: ``num_stages * (block_m * block_k + block_k * block_n)`` bytes must stay
  well under Hopper's 227 KiB.

Documented default: for M beyond the last row the ``large`` entry applies
(128 x 256 x 128 tiles, 8 warps, 3 stages, grouped launch order of 8 M-tiles for L2 reuse).
"""

from __future__ import annotations

import dataclasses

from jaxq.kernels.gpu._pallas import is_power_of_two

__all__ = [
    "BlockConfig", "INT8_MATMUL_TABLE", "INT8_MATMUL_DEFAULT", "WEIGHT_ONLY_TABLE",
    "WEIGHT_ONLY_DEFAULT", "int8_matmul_block", "weight_only_block", "quantize_block",
    "next_power_of_two",
]


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """Tile sizes and launch parameters of one kernel launch.

    Attributes:
      block_m, block_n, block_k: tile sizes (powers of two). ``block_m == 1`` selects the
        GEMV form of the weight-only kernels (a broadcast-multiply-reduce, no tensor cores).
      num_warps: Triton warps per program.
      num_stages: Triton software-pipelining depth of the K loop.
      group_m: launch order groups of ``group_m`` M-tiles (1: row-major order).
      split_k: number of programs sharing one output tile along K (weight-only kernels;
        partial sums are added by a small XLA reduction).
    """

    block_m: int
    block_n: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 3
    group_m: int = 1
    split_k: int = 1

    def __post_init__(self):
        for name in ("block_m", "block_n", "block_k", "num_warps", "group_m", "split_k"):
            value = getattr(self, name)
            if not is_power_of_two(value):
                raise ValueError(f"BlockConfig.{name} must be a power of two >= 1; got {value!r}")
        if not isinstance(self.num_stages, int) or self.num_stages < 1:
            raise ValueError(f"BlockConfig.num_stages must be an int >= 1; got {self.num_stages!r}")


def next_power_of_two(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


# (largest M of the class, config). First row whose bound is >= M wins.
INT8_MATMUL_TABLE: tuple[tuple[int, BlockConfig], ...] = (
    (16, BlockConfig(16, 64, 256, num_warps=4, num_stages=4)),
    (32, BlockConfig(32, 64, 256, num_warps=4, num_stages=4)),
    (64, BlockConfig(64, 64, 256, num_warps=4, num_stages=4)),
    (128, BlockConfig(64, 128, 128, num_warps=4, num_stages=4)),
    (256, BlockConfig(128, 128, 128, num_warps=8, num_stages=4)),
)
INT8_MATMUL_DEFAULT = BlockConfig(128, 256, 128, num_warps=8, num_stages=3, group_m=8)

# Weight-only (decode) kernels. block_k is a multiple of, or replaced by, the int4 group.
WEIGHT_ONLY_TABLE: tuple[tuple[int, BlockConfig], ...] = (
    (1, BlockConfig(1, 128, 128, num_warps=4, num_stages=4, split_k=4)),
    (16, BlockConfig(16, 64, 128, num_warps=4, num_stages=4, split_k=2)),
    (32, BlockConfig(32, 64, 128, num_warps=4, num_stages=4, split_k=2)),
    (64, BlockConfig(64, 64, 128, num_warps=4, num_stages=4)),
)
WEIGHT_ONLY_DEFAULT = BlockConfig(64, 128, 128, num_warps=4, num_stages=3)


def _lookup(table, default, m):
    for bound, config in table:
        if m <= bound:
            return config
    return default


def _fit(config: BlockConfig, m: int, n: int, k: int, min_m: int, min_k: int) -> BlockConfig:
    block_m = config.block_m if config.block_m == 1 else min(
        config.block_m, max(min_m, next_power_of_two(m)))
    return dataclasses.replace(
        config,
        block_m=block_m,
        block_n=min(config.block_n, max(16, next_power_of_two(n))),
        block_k=min(config.block_k, max(min_k, next_power_of_two(k))),
    )


def int8_matmul_block(m: int, n: int, k: int) -> BlockConfig:
    """Table entry for an int8 x int8 GEMM of shape (m, k) x (k, n), clamped to the shape."""
    return _fit(_lookup(INT8_MATMUL_TABLE, INT8_MATMUL_DEFAULT, m), m, n, k, 16, 32)


def weight_only_block(m: int, n: int, k: int, group_size: int | None = None) -> BlockConfig:
    """Table entry for a weight-only GEMM; with int4 ``block_k`` becomes the group size."""
    config = _fit(_lookup(WEIGHT_ONLY_TABLE, WEIGHT_ONLY_DEFAULT, m), m, n, k, 16, 32)
    if group_size is not None:
        config = dataclasses.replace(config, block_k=group_size)
    return config


def quantize_block(m: int, k: int) -> BlockConfig:
    """Rows per program and K chunk of the fused dynamic-quantization kernel.

    A whole row is held in one tile when ``next_power_of_two(k) <= 16384`` (one read of
    the input); longer rows are processed in 4096-wide chunks, in two sweeps (the second
    one hits L2).
    """
    width = next_power_of_two(k)
    if width > 16384:
        return BlockConfig(1, 1, 4096, num_warps=8, num_stages=2)
    block_m = max(1, min(16, next_power_of_two(m), 4096 // width))
    return BlockConfig(block_m, 1, width, num_warps=4 if width <= 4096 else 8, num_stages=1)
