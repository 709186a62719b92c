"""Granularity: which elements share one (scale, zero_point), as torchao defines it.

A granularity turns into a ``block_size``: one entry per input dimension, the number
of consecutive elements along that dimension that share a quantization parameter.
A full-size entry reduces over that dimension, 1 gives one parameter per element.

Example:
  >>> import jaxq
  >>> jaxq.get_block_size((2, 3, 8), jaxq.PerGroup(4))
  (1, 1, 4)
  >>> jaxq.get_block_size((2, 3, 8), jaxq.PerAxis(1))
  (2, 1, 8)
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Granularity:
    """Base class of the granularities."""


@dataclasses.dataclass(frozen=True)
class PerTensor(Granularity):
    """One parameter for the whole tensor."""


@dataclasses.dataclass(frozen=True)
class PerAxis(Granularity):
    """One parameter per index of ``axis``; every other dimension is reduced over.

    Attributes:
      axis: the dimension that is kept (may be negative).
    """

    axis: int


@dataclasses.dataclass(frozen=True)
class PerGroup(Granularity):
    """One parameter per ``group_size`` consecutive elements of the last dimension."""

    group_size: int


@dataclasses.dataclass(frozen=True)
class PerRow(Granularity):
    """One parameter per row: dimension ``dim`` is reduced over, all others kept."""

    dim: int = -1


@dataclasses.dataclass(frozen=True)
class PerToken(Granularity):
    """One parameter per token (the last dimension is reduced over)."""


@dataclasses.dataclass(frozen=True)
class PerBlock(Granularity):
    """One parameter per block of ``block_size`` (trailing dimensions; leading ones are 1)."""

    block_size: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "block_size", tuple(int(b) for b in self.block_size))


class MappingType(enum.Enum):
    """How the float range maps to the integer range (torchao semantics).

    SYMMETRIC: ``[-max|x|, max|x|]`` onto ``[qmin, qmax]``, zero point at the middle.
    SYMMETRIC_NO_CLIPPING_ERR: scale = max(min_neg / qmin, max_pos / qmax).
    ASYMMETRIC: ``[min(x,0), max(x,0)]`` onto ``[qmin, qmax]``.
    """

    SYMMETRIC = enum.auto()
    SYMMETRIC_NO_CLIPPING_ERR = enum.auto()
    ASYMMETRIC = enum.auto()


class ZeroPointDomain(enum.Enum):
    """Where the zero point lives.

    INT: ``q = round(x / s) + zp``; FLOAT: ``q = round((x - (zp - s * mid)) / s)``
    (tinygemm style); NONE: ``q = round(x / s)`` with no zero point.
    """

    INT = enum.auto()
    FLOAT = enum.auto()
    NONE = enum.auto()


def _normalize_axis(axis: int, ndim: int, argument: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{argument}={axis} is out of range for a tensor of rank {ndim}; "
                         f"accepted: {-ndim}..{ndim - 1}")
    return axis % ndim


def get_block_size(input_shape: Sequence[int], granularity: Granularity) -> tuple[int, ...]:
    """The ``block_size`` of ``granularity`` for an input of ``input_shape``.

    Args:
      input_shape: the shape of the tensor to quantize.
      granularity: one of PerTensor, PerAxis, PerGroup, PerRow, PerToken, PerBlock.

    Returns:
      A tuple with one entry per dimension of ``input_shape``.

    Raises:
      ValueError: a dimension that the block does not divide, or an axis out of range.
      TypeError: ``granularity`` is not a Granularity.
    """
    shape = tuple(int(s) for s in input_shape)
    ndim = len(shape)
    if isinstance(granularity, PerTensor):
        return shape
    if isinstance(granularity, PerAxis):
        block = list(shape)
        block[_normalize_axis(granularity.axis, ndim, "PerAxis.axis")] = 1
        return tuple(block)
    if isinstance(granularity, PerBlock):
        block = tuple(granularity.block_size)
        if len(block) > ndim:
            raise ValueError(f"PerBlock.block_size={block} has more dimensions than the "
                             f"input shape {shape}")
        block = (1,) * (ndim - len(block)) + block
        check_block_size(shape, block)
        return block
    if isinstance(granularity, PerToken):
        if ndim == 0:
            return ()
        return (1,) * (ndim - 1) + (shape[-1],)
    if isinstance(granularity, PerRow):
        block = [1] * ndim
        dim = _normalize_axis(granularity.dim, ndim, "PerRow.dim")
        block[dim] = shape[dim]
        return tuple(block)
    if isinstance(granularity, PerGroup):
        if ndim == 0:
            raise ValueError("PerGroup needs an input of rank >= 1")
        group = int(granularity.group_size)
        if group <= 0 or shape[-1] % group != 0:
            raise ValueError(f"PerGroup.group_size={group} does not divide the last "
                             f"dimension of the input shape {shape}")
        return (1,) * (ndim - 1) + (group,)
    raise TypeError(f"granularity={granularity!r} is not a Granularity; accepted: "
                    "PerTensor, PerAxis, PerGroup, PerRow, PerToken, PerBlock")


def check_block_size(input_shape: Sequence[int], block_size: Sequence[int]) -> tuple[int, ...]:
    """Validates ``block_size`` against ``input_shape`` and returns it as a tuple.

    Raises:
      ValueError: rank mismatch, a non-positive entry, or an entry that does not divide
        its dimension.
    """
    shape = tuple(int(s) for s in input_shape)
    block = tuple(int(b) for b in block_size)
    if len(block) != len(shape):
        raise ValueError(f"block_size={block} must have one entry per dimension of the "
                         f"input shape {shape}")
    for i, (size, b) in enumerate(zip(shape, block)):
        if b <= 0 or size % b != 0:
            raise ValueError(f"block_size[{i}]={b} does not divide input dimension {i} "
                             f"(size {size}) of shape {shape}")
    return block


def num_blocks(input_shape: Sequence[int], block_size: Sequence[int]) -> tuple[int, ...]:
    """The shape of the parameter grid: ``input_shape[i] // block_size[i]`` per dimension."""
    block = check_block_size(input_shape, block_size)
    return tuple(int(s) // b for s, b in zip(input_shape, block))
