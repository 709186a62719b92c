"""``torch.ao.nn.qat``: QAT modules (``jaxq.nn.qat.Linear``, ``Conv1d``, ``Conv2d``,
``Conv3d``; ``jaxq.nn.qat.dynamic.Linear``).

torch's ``qat.Embedding``/``EmbeddingBag`` are not provided yet.
"""

from jaxq.nn.qat.conv import Conv1d, Conv2d, Conv3d
from jaxq.nn.qat.linear import Linear
from jaxq.nn.qat import dynamic  # noqa: E402

__all__ = ["Linear", "Conv1d", "Conv2d", "Conv3d", "dynamic"]
