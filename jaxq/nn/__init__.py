"""Flax NNX modules mirroring ``torch.ao.nn`` (``torch.ao.nn.<sub>.X`` is ``jaxq.nn.<sub>.X``).

Layout: activations channels-last, kernels as Flax lays them (see :mod:`jaxq.nn.layout`).
The float activation modules torch's fusion patterns need are in :mod:`jaxq.nn.modules`
(``jaxq.nn.ReLU`` ...).
"""

from jaxq.nn import layout, modules  # noqa: F401
from jaxq.nn.modules import (  # noqa: F401
    ELU,
    GELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    Identity,
    LeakyReLU,
    ReLU,
    ReLU6,
    SiLU,
    Sigmoid,
    Tanh,
)

from jaxq.nn import intrinsic, qat  # noqa: F401,E402

# --- nn-quantized subpackages (added by the nn-quantized helper, one line each) ---
from jaxq.nn import quantized  # noqa: F401,E402
from jaxq.nn import quantizable  # noqa: F401,E402
