"""Layer 6: execution backends for quantized ops, behind one entry point per op.

Entry points (what every quantized Linear / Conv module calls)
---------------------------------------------------------------
``quantized_matmul(x, weight, x_scale=None, x_zero_point=None, *, dynamic=None, bias=None,
relu=False, out_dtype=None, out_scale=None, out_zero_point=None, backend=None)``
  ``x (..., K)`` times a :class:`PackedWeight` ``(N, K)`` -> ``(..., N)``. The mode
  follows the activation: uint8/int8 ``x`` with ``x_scale``/``x_zero_point`` per tensor or
  per token is *static*; float ``x`` with ``dynamic=DynamicQuantization(...)`` is
  *dynamic* (qparams from the batch min/max, torch's x86 rule by default); float ``x``
  alone is *weight-only* (8-bit or packed 4-bit weights, per-channel or group-wise).

``quantized_conv2d(x, weight, x_scale, x_zero_point, *, stride, padding, dilation, bias,
relu, out_dtype, out_scale, out_zero_point, backend)``
  NHWC uint8/int8 activations with a :class:`PackedConvWeight` (static quantization).

``pack_weight(weight (N, K), scale, zero_point=None, *, bits=8, group_size=None,
layout=None)`` / ``pack_conv_weight(...)``
  Pack once at convert time; the result is a pytree to pass into jitted code. The
  layout defaults to the fastest backend available here; every backend can read every
  layout (slowly), so a packed weight is portable.

Semantics (identical for every backend; int paths bit-exact)
------------------------------------------------------------
``acc[m, n] = sum_k (x[m, k] - zx) * (w[n, k] - zw[n])`` exactly in int32, then

* float output: ``y = fma(float(acc), sx * sw[n], bias[n])`` (one rounding) and ReLU;
* integer output: ``q = clamp(rint((float(acc) + bias[n] / (sx*sw[n])) * ((sx*sw[n]) / so))
  + zo, zo if relu else qmin, qmax)``;
* weight-only: ``y = x @ ((w - zw) * sw).T + bias`` accumulated in float32.

These are torch's x86 (fbgemm) formulas: static results equal ``quantized::linear`` /
``quantized::conv2d``, dynamic ones ``quantized::linear_dynamic`` (see
:class:`DynamicQuantization`).

Backends
--------
* ``"xla"`` (:mod:`jaxq.kernels.xla`): the reference, on every platform.
* ``"cpu_native"`` (:mod:`jaxq.kernels.cpu`): AVX512-VNNI / AVX2 C++ kernels through XLA's
  FFI, compiled from ``kernels/cpu/`` on first use; on a machine without a compiler or
  those CPU features, the reference runs instead after a one-line warning.
* GPU kernels register the same way (:mod:`jaxq.kernels.gpu`).

Adding a backend: ``register_backend(Backend(name, platform, matmul=fn,
supports=predicate, priority=...))`` where ``fn(problem: MatmulProblem, args:
MatmulArgs)`` returns the ``(m, n)`` result and ``predicate(problem)`` is a static check
(shapes, modes, weight layout). Dispatch is resolved per platform at lowering time with
``jax.lax.platform_dependent``, defaulting to the reference.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxq.kernels import DynamicQuantization, pack_weight, quantized_matmul
  >>> w = pack_weight(jnp.array([[1, -2, 3], [4, 5, -6]], jnp.int8), jnp.float32(0.05))
  >>> f = jax.jit(lambda x, w: quantized_matmul(x, w, dynamic=DynamicQuantization()))
  >>> f(jnp.ones((4, 3)), w).shape
  (4, 2)
"""

from jaxq.kernels import cpu as _cpu  # registers the native CPU backend (built lazily)
from jaxq.kernels.conv import (
    Conv2dArgs, Conv2dProblem, PackedConvWeight, pack_conv_weight, quantized_conv2d)
from jaxq.kernels.matmul import quantized_matmul
from jaxq.kernels.problem import DynamicQuantization, MatmulArgs, MatmulProblem
from jaxq.kernels.registry import (
    Backend, register_backend, registered_backends, select_backends, unregister_backend)
from jaxq.kernels.weights import (
    PackedWeight, WeightLayout, WeightSpec, pack_weight, register_weight_layout,
    weight_values)

__all__ = [
    "Backend", "Conv2dArgs", "Conv2dProblem", "PackedConvWeight", "pack_conv_weight",
    "quantized_conv2d", "DynamicQuantization", "MatmulArgs", "MatmulProblem", "PackedWeight",
    "WeightLayout", "WeightSpec", "pack_weight", "quantized_matmul", "register_backend",
    "register_weight_layout", "registered_backends", "select_backends",
    "unregister_backend", "weight_values",
]
