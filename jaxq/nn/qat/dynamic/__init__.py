"""``torch.ao.nn.qat.dynamic``: ``jaxq.nn.qat.dynamic.Linear``."""

from jaxq.nn.qat.dynamic.linear import Linear

__all__ = ["Linear"]
