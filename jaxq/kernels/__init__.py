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
* ``"xla"`` (:mod:`jaxq.kernels.xla`, :func:`~jaxq.kernels.conv.xla_conv2d`): the
  reference, on every platform (int8 ``dot_general`` / ``conv_general_dilated`` with int32
  accumulation; M = 1 padded to 2, weight kept ``(N, K)``).
* ``"cpu_native"`` (:mod:`jaxq.kernels.cpu`): AVX512-VNNI / AVX2 C++ kernels called
  through XLA's FFI, weights pre-packed into their own layouts, helpers run on XLA's
  intra-op thread pool. Compiled from ``kernels/cpu/`` on first use into a cache
  directory (:mod:`jaxq.kernels.cpu.build`); on a machine without a compiler or without
  those CPU features the reference runs instead after a one-line warning.
* GPU kernels register the same way (:mod:`jaxq.kernels.gpu`).

Adding a backend
----------------
``register_backend(Backend(name, platform, matmul=fn, supports=predicate, priority=p,
conv2d=conv_fn, supports_conv2d=conv_predicate, available=is_usable))``:

* ``platform`` is a JAX platform name (``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``);
* ``fn(problem: MatmulProblem, args: MatmulArgs) -> (m, n)``: ``args.x`` is already 2-D,
  ``args.weight`` is the :class:`PackedWeight` (read any layout with
  :func:`weight_values`, or accept only your own layout in ``predicate``);
* ``predicate(problem) -> bool`` is static (shapes, mode, dtypes, weight layout);
* optionally claim the default packing layout for weights you run with
  :func:`jaxq.kernels.weights.add_default_layout_hook` and
  :func:`register_weight_layout` (pack / unpack functions).

Per call, the highest-priority available backend that accepts the problem is chosen for
each platform and the candidates are wrapped in ``jax.lax.platform_dependent`` (decided
when the computation is lowered for its device), with the reference as the default.
Nothing depends on values, so a second jitted call with the same shapes never recompiles.
``backend="xla"`` or ``backend="<name>"`` forces a choice (ValueError if it cannot run).

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
# Registers the Pallas GPU backend; it is selected only on CUDA devices.
from jaxq.kernels import gpu as _gpu  # noqa: E402  (after the names it builds on)

__all__ = [
    "Backend", "Conv2dArgs", "Conv2dProblem", "PackedConvWeight", "pack_conv_weight",
    "quantized_conv2d", "DynamicQuantization", "MatmulArgs", "MatmulProblem", "PackedWeight",
    "WeightLayout", "WeightSpec", "pack_weight", "quantized_matmul", "register_backend",
    "register_weight_layout", "registered_backends", "select_backends",
    "unregister_backend", "weight_values",
]
