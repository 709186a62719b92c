"""torch.ao.nn.quantized on Flax NNX (being built)."""
from jaxq.nn.quantized import functional  # noqa: F401
