"""Integer ranges: defaults per dtype, custom ranges, reduce_range.

Two rules, because torch has two:

* :func:`quant_range` is torchao's ``_get_and_check_qmin_qmax``: ``None`` means the
  dtype's full range, explicit values must lie inside it.
* :func:`observer_quant_range` is torch.ao's observer rule (``calculate_qmin_qmax`` with
  ``validate_qmin_qmax``): a custom range must contain 0, and ``reduce_range`` halves
  both ends (floor division), also for custom ranges.

Example:
  >>> import jaxq
  >>> jaxq.core.ranges.observer_quant_range(jaxq.qint8, reduce_range=True)
  (-64, 63)
"""

from __future__ import annotations

from typing import Any

from jaxq.core.dtypes import as_quant_dtype


def _check_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise TypeError(f"{argument}={value!r} must be an integer")
    return int(value)


def quant_range(dtype: Any, quant_min: int | float | None = None,
                quant_max: int | float | None = None) -> tuple[int | float, int | float]:
    """The validated ``(quant_min, quant_max)`` of ``dtype`` (torchao's rule).

    Args:
      dtype: anything :func:`jaxq.as_quant_dtype` accepts.
      quant_min: lower bound, or None for the dtype's own.
      quant_max: upper bound, or None for the dtype's own.

    Raises:
      ValueError: a bound outside the dtype's range, or ``quant_min > quant_max``.
    """
    qdtype = as_quant_dtype(dtype)
    lo, hi = qdtype.quant_min, qdtype.quant_max
    if quant_min is None:
        quant_min = lo
    elif qdtype.is_integer:
        quant_min = _check_int(quant_min, "quant_min")
    if quant_max is None:
        quant_max = hi
    elif qdtype.is_integer:
        quant_max = _check_int(quant_max, "quant_max")
    if quant_min < lo:
        raise ValueError(f"quant_min={quant_min} is below the range of {qdtype!r} "
                         f"([{lo}, {hi}])")
    if quant_max > hi:
        raise ValueError(f"quant_max={quant_max} is above the range of {qdtype!r} "
                         f"([{lo}, {hi}])")
    if quant_min > quant_max:
        raise ValueError(f"quant_min={quant_min} must not exceed quant_max={quant_max}")
    return quant_min, quant_max


def observer_quant_range(dtype: Any, quant_min: int | None = None,
                         quant_max: int | None = None,
                         reduce_range: bool = False) -> tuple[int, int]:
    """The ``(quant_min, quant_max)`` a torch.ao observer uses.

    With no custom range: the dtype's default 8-bit range (qint8 [-128, 127] or
    [-64, 63] with ``reduce_range``; quint8 [0, 255] or [0, 127]; qint32, int16,
    uint16 full; anything else [0, 15] as torch does). With a custom range: it must
    contain 0, satisfy ``quant_min < quant_max`` and fit the dtype; ``reduce_range``
    then floor-halves both ends.

    Raises:
      ValueError: a custom range that is one-sided, empty, reversed or too wide, or
        only one of ``quant_min``/``quant_max`` given.
    """
    qdtype = as_quant_dtype(dtype)
    if (quant_min is None) != (quant_max is None):
        raise ValueError("quant_min and quant_max must be given together "
                         f"(got quant_min={quant_min}, quant_max={quant_max})")
    if quant_min is not None:
        quant_min = _check_int(quant_min, "quant_min")
        quant_max = _check_int(quant_max, "quant_max")
        if not quant_min <= 0 <= quant_max:
            raise ValueError(f"the custom range quant_min={quant_min}, quant_max={quant_max} "
                             "must include 0")
        if quant_min >= quant_max:
            raise ValueError(f"quant_min={quant_min} must be strictly less than "
                             f"quant_max={quant_max}")
        width = quant_max - quant_min + 1
        limit = 2**32 if qdtype.bits == 32 else 2 ** max(qdtype.bits, 8)
        if qdtype.is_integer and width > limit:
            raise ValueError(f"the custom range [{quant_min}, {quant_max}] is wider than "
                             f"{qdtype!r} allows ({limit} values)")
        if reduce_range:
            quant_min, quant_max = quant_min // 2, quant_max // 2
        return quant_min, quant_max
    name = qdtype.name
    if name in ("qint8", "int8"):
        return (-64, 63) if reduce_range else (-128, 127)
    if name in ("quint8", "uint8"):
        return (0, 127) if reduce_range else (0, 255)
    if name in ("qint32", "int32"):
        return -(2**31), 2**31 - 1
    if name == "uint16":
        return 0, 2**16 - 1
    if name == "int16":
        return -(2**15), 2**15 - 1
    return 0, 15

