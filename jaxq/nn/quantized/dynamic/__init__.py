"""``torch.ao.nn.quantized.dynamic``: float-in, float-out modules with quantized weights
(``jaxq.nn.quantized.dynamic.Linear``). LSTM/GRU and their cells are not provided."""

from jaxq.nn.quantized.dynamic.linear import Linear

__all__ = ["Linear"]
