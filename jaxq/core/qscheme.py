"""Quantization schemes: torch's ``torch.qscheme`` values.

Example:
  >>> import jaxq
  >>> jaxq.per_channel_symmetric.is_per_channel, jaxq.per_channel_symmetric.is_symmetric
  (True, True)
"""

from __future__ import annotations

import enum
from typing import Any


class QScheme(enum.Enum):
    """torch's quantization schemes (``torch.per_tensor_affine`` etc.)."""

    per_tensor_affine = "per_tensor_affine"
    per_channel_affine = "per_channel_affine"
    per_tensor_symmetric = "per_tensor_symmetric"
    per_channel_symmetric = "per_channel_symmetric"
    per_channel_affine_float_qparams = "per_channel_affine_float_qparams"

    @property
    def is_per_channel(self) -> bool:
        return self.value.startswith("per_channel")

    @property
    def is_per_tensor(self) -> bool:
        return self.value.startswith("per_tensor")

    @property
    def is_symmetric(self) -> bool:
        return self.value.endswith("symmetric")

    @property
    def torch_name(self) -> str:
        return f"torch.{self.value}"

    def __repr__(self) -> str:
        return f"jaxq.{self.value}"


per_tensor_affine = QScheme.per_tensor_affine
per_channel_affine = QScheme.per_channel_affine
per_tensor_symmetric = QScheme.per_tensor_symmetric
per_channel_symmetric = QScheme.per_channel_symmetric
per_channel_affine_float_qparams = QScheme.per_channel_affine_float_qparams


def as_qscheme(qscheme: Any, argument: str = "qscheme") -> QScheme:
    """Converts a QScheme, its name (``"torch.per_tensor_affine"``) or a torch qscheme.

    Raises:
      TypeError: naming ``argument`` and the accepted values.
    """
    if isinstance(qscheme, QScheme):
        return qscheme
    text = str(qscheme).removeprefix("torch.")
    try:
        return QScheme(text)
    except ValueError:
        accepted = ", ".join(q.value for q in QScheme)
        raise TypeError(f"{argument}={qscheme!r} is not a qscheme; accepted: {accepted}"
                        ) from None
