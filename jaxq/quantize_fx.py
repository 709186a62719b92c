"""Graph-mode quantization: ``torch.ao.quantization.quantize_fx`` for Flax NNX models.

``prepare_fx`` / ``prepare_qat_fx`` / ``convert_fx`` / ``convert_to_reference_fx`` /
``fuse_fx`` take UNMODIFIED ``nnx.Module`` s (no QuantStubs, no qconfig attributes): the
model is captured into a graph (:mod:`jaxq.fx.graph`, the analogue of FX symbolic
tracing), fused (:mod:`jaxq.fx.fuse`), observed (:mod:`jaxq.fx.prepare`) and converted
(:mod:`jaxq.fx.convert`) following the :class:`~jaxq.qconfig_mapping.QConfigMapping` and
the :class:`~jaxq.backend_config.BackendConfig`, with torch's rules.

Each step returns a :class:`jaxq.fx.GraphModule` (an ``nnx.Module``): call it like the
original model, ``nnx.jit`` it (the graph is static, observer statistics and weights are
state), train the QAT one with ``optax`` through ``nnx.grad``. Its ``root`` attribute
is the (transformed) module tree; its ``graph`` the nodes.

Deviations from torch:

* the graph is captured from ``example_inputs`` (torch's FX traces symbolically); so
  ``fuse_fx`` takes ``example_inputs`` too (or an already captured GraphModule). A
  GraphModule runs on inputs with the captured pytree structure; other shapes (another
  batch size) re-trace the float model abstractly once per shape and reuse the same
  nodes (:meth:`jaxq.fx.Graph.specialize`), unless the model's graph itself depends on
  the shapes (then ``ValueError``);
* linen models: capture them with :func:`jaxq.fx.linen.capture_linen` (``module.apply``
  with NNX equivalents of the leaf layers) and pass the GraphModule as ``model``;
* activations are quantized per tensor (static), or dynamically for single weighted
  modules (``default_dynamic_qconfig`` / ``float16_dynamic_qconfig``: Linear and
  Linear+ReLU become ``jaxq.nn.quantized.dynamic`` modules); static float16 qconfigs
  leave the ops in floating point; standalone
  modules, custom module classes, ``input_quantized_indexes`` /
  ``output_quantized_indexes`` and equalization raise ``NotImplementedError``;
* ops with a lowered int8 kernel are quantized Linear / Conv (and their fused ReLU /
  BatchNorm forms, and the QAT modules) and add / mul (+relu); every other quantized op
  runs as ``dequantize -> float op -> quantize`` with the qparams torch's kernel would
  use (torch's reference representation), see :mod:`jaxq.fx.convert`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.qconfig_mapping import get_default_qconfig_mapping
  >>> class MLP(nnx.Module):
  ...     def __init__(self):
  ...         self.fc1 = nnx.Linear(4, 8, rngs=nnx.Rngs(0))
  ...         self.fc2 = nnx.Linear(8, 2, rngs=nnx.Rngs(1))
  ...     def __call__(self, x):
  ...         return self.fc2(jax.nn.relu(self.fc1(x)))
  >>> x = jax.random.normal(jax.random.key(0), (16, 4))
  >>> prepared = prepare_fx(MLP(), get_default_qconfig_mapping("x86"), (x,))
  >>> _ = prepared(x)                       # calibrate
  >>> quantized = convert_fx(prepared)
  >>> quantized(x).shape
  (16, 2)
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxq.fx.graph import GraphModule, capture

__all__ = ["fuse_fx", "prepare_fx", "prepare_qat_fx", "convert_fx", "convert_to_reference_fx"]


def _check_backend_config(backend_config: Any) -> Any:
    from jaxq.backend_config import BackendConfig, get_native_backend_config
    if backend_config is None:
        return get_native_backend_config()
    if isinstance(backend_config, dict):
        return BackendConfig.from_dict(backend_config)
    if not isinstance(backend_config, BackendConfig):
        raise TypeError("backend_config must be a jaxq.backend_config.BackendConfig, a dict "
                        f"or None; got {type(backend_config).__name__}")
    return backend_config


def _check_qconfig_mapping(qconfig_mapping: Any, argument: str = "qconfig_mapping") -> Any:
    from jaxq.qconfig_mapping import QConfigMapping
    if isinstance(qconfig_mapping, dict):
        return QConfigMapping.from_dict(qconfig_mapping)
    if not isinstance(qconfig_mapping, QConfigMapping):
        raise TypeError(f"{argument} must be a jaxq.qconfig_mapping.QConfigMapping or a dict; "
                        f"got {type(qconfig_mapping).__name__}")
    return qconfig_mapping


def _check_model(model: Any) -> None:
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module; got {type(model).__name__}")


def _check_example_inputs(example_inputs: Any) -> tuple:
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of the model's positional inputs; "
                        f"got {type(example_inputs).__name__}")
    return example_inputs


def _prepare_custom_config(config: Any) -> Any:
    from jaxq.custom_config import PrepareCustomConfig
    if config is None:
        return PrepareCustomConfig()
    if isinstance(config, dict):
        config = PrepareCustomConfig.from_dict(config)
    if not isinstance(config, PrepareCustomConfig):
        raise TypeError("prepare_custom_config must be a jaxq.custom_config."
                        f"PrepareCustomConfig, a dict or None; got {type(config).__name__}")
    unsupported = [name for name in ("standalone_module_names", "standalone_module_classes",
                                     "float_to_observed_mapping", "input_quantized_indexes",
                                     "output_quantized_indexes")
                   if getattr(config, name)]
    if unsupported:
        raise NotImplementedError(f"prepare_custom_config sets {unsupported}, which jaxq's "
                                  "graph mode does not implement; supported: "
                                  "non_traceable_module_names, non_traceable_module_classes, "
                                  "preserved_attributes")
    return config


def _pattern_objects(backend_config: Any, qconfig_mapping: Any = None
                     ) -> tuple[set, set]:
    types: set = set()
    functions: set = set()
    objects = []
    for config in backend_config.configs:
        pattern = config.pattern
        objects.extend(pattern if isinstance(pattern, tuple) else (pattern,))
    if qconfig_mapping is not None:
        objects.extend(qconfig_mapping.object_type_qconfigs)
        objects.extend(t for _, t, _ in qconfig_mapping.module_name_object_type_order_qconfigs)
    for obj in objects:
        if isinstance(obj, type):
            if issubclass(obj, nnx.Module):
                types.add(obj)
        elif callable(obj) and not isinstance(obj, str):
            try:
                hash(obj)
            except TypeError:
                continue
            functions.add(obj)
    return types, functions


def _capture(model: nnx.Module, example_inputs: tuple, backend_config: Any,
             qconfig_mapping: Any = None, prepare_custom_config: Any = None) -> GraphModule:
    types, functions = _pattern_objects(backend_config, qconfig_mapping)
    names: list[str] = []
    if prepare_custom_config is not None:
        types |= set(prepare_custom_config.non_traceable_module_classes)
        names = list(prepare_custom_config.non_traceable_module_names)
    gm = capture(model, example_inputs, leaf_types=types, leaf_functions=functions,
                 leaf_module_names=names)
    gm.graph.meta["stage"] = "captured"
    return gm


def fuse_fx(model: nnx.Module | GraphModule, fuse_custom_config: Any = None,
            backend_config: Any = None, *, example_inputs: tuple | None = None
            ) -> GraphModule:
    """Fuses the BackendConfig's fusion patterns (torch's ``fuse_fx``).

    Conv/Linear + BatchNorm are folded (BatchNorm in eval mode: ``model.eval()``);
    ``(Conv|Linear|BatchNorm, relu)`` become the ``jaxq.nn.intrinsic`` containers.

    Args:
      model: an ``nnx.Module`` (then ``example_inputs`` is required) or a captured
        :class:`jaxq.fx.GraphModule`.
      fuse_custom_config: a ``jaxq.custom_config.FuseCustomConfig``, a dict or None
        (``preserved_attributes`` only: the root keeps every attribute anyway).
      backend_config: default the native backend config (as torch).
      example_inputs: positional inputs to capture the model with (jaxq addition: torch
        traces symbolically).

    Returns:
      The fused GraphModule (``model`` is unchanged).

    Raises:
      TypeError: bad argument types. ValueError: missing ``example_inputs``, or a fuser
        rejects its modules (BatchNorm in training mode).
    """
    from jaxq.custom_config import FuseCustomConfig
    from jaxq.fx.fuse import fuse_graph_module
    backend_config = _check_backend_config(backend_config)
    if fuse_custom_config is not None and not isinstance(fuse_custom_config,
                                                         (FuseCustomConfig, dict)):
        raise TypeError("fuse_custom_config must be a FuseCustomConfig, a dict or None; got "
                        f"{type(fuse_custom_config).__name__}")
    if isinstance(model, GraphModule):
        gm = model
    else:
        _check_model(model)
        if example_inputs is None:
            raise ValueError("fuse_fx needs example_inputs=(...) to capture an nnx.Module "
                             "(or pass a GraphModule from jaxq.fx.capture)")
        gm = _capture(model, _check_example_inputs(example_inputs), backend_config)
    fused = fuse_graph_module(gm, backend_config, is_qat=False)
    fused.graph.meta["stage"] = "fused"
    return fused


def _prepare(model: Any, qconfig_mapping: Any, example_inputs: Any, prepare_custom_config: Any,
             equalization_config: Any, backend_config: Any, is_qat: bool) -> GraphModule:
    from jaxq.fx.fuse import fuse_graph_module
    from jaxq.fx.prepare import prepare_graph_module
    _check_model(model)
    if isinstance(model, GraphModule) and model.graph.meta.get("stage") != "captured":
        raise TypeError("model is a jaxq.fx.GraphModule that was already fused / prepared / "
                        "converted; prepare_fx takes the float nnx.Module or a captured "
                        "GraphModule (jaxq.fx.capture, jaxq.fx.linen.capture_linen)")
    qconfig_mapping = _check_qconfig_mapping(qconfig_mapping)
    example_inputs = _check_example_inputs(example_inputs)
    if equalization_config is not None:
        raise NotImplementedError("_equalization_config is not implemented in jaxq's graph "
                                  "mode; pass None")
    prepare_custom_config = _prepare_custom_config(prepare_custom_config)
    backend_config = _check_backend_config(backend_config)
    if isinstance(model, GraphModule):
        gm = model
    else:
        gm = _capture(model, example_inputs, backend_config, qconfig_mapping,
                      prepare_custom_config)
    fused = fuse_graph_module(gm, backend_config, is_qat=is_qat)
    observed = prepare_graph_module(fused, qconfig_mapping, backend_config, is_qat)
    observed.graph.meta.update(stage="prepared", is_qat=is_qat, backend_config=backend_config,
                               qconfig_mapping=qconfig_mapping)
    return observed


def prepare_fx(model: nnx.Module, qconfig_mapping: Any, example_inputs: tuple,
               prepare_custom_config: Any = None, _equalization_config: Any = None,
               backend_config: Any = None) -> GraphModule:
    """Captures, fuses and observes a model for post-training static quantization.

    Args:
      model: the float ``nnx.Module`` (unchanged). BatchNorms in eval mode if the backend
        folds them (``model.eval()``). Or an already captured GraphModule
        (:func:`jaxq.fx.capture`; :func:`jaxq.fx.linen.capture_linen` for a linen model).
      qconfig_mapping: a :class:`~jaxq.qconfig_mapping.QConfigMapping` (or its dict form).
      example_inputs: tuple of positional inputs used to capture the graph.
      prepare_custom_config: ``PrepareCustomConfig`` / dict / None; supports
        ``non_traceable_module_names`` / ``non_traceable_module_classes`` (kept as one
        node) and ``preserved_attributes``.
      _equalization_config: must be None.
      backend_config: default :func:`jaxq.backend_config.get_native_backend_config`.

    Returns:
      The observed :class:`jaxq.fx.GraphModule`; call it on calibration data (eagerly or
      under ``nnx.jit``), then :func:`convert_fx`.

    Raises:
      TypeError: bad argument types. ValueError: fusion errors.
      NotImplementedError: unsupported custom-config features or equalization.
    """
    return _prepare(model, qconfig_mapping, example_inputs, prepare_custom_config,
                    _equalization_config, backend_config, is_qat=False)


def prepare_qat_fx(model: nnx.Module, qconfig_mapping: Any, example_inputs: tuple,
                   prepare_custom_config: Any = None, backend_config: Any = None
                   ) -> GraphModule:
    """Like :func:`prepare_fx` for quantization-aware training (torch's ``prepare_qat_fx``).

    Conv+BN(+ReLU) become QAT modules that fold BatchNorm into the fake-quantized weight
    (``jaxq.nn.intrinsic.qat``), Linear(+ReLU) / Conv(+ReLU) become QAT modules with
    weight fake-quant, and activation observers are the QAT qconfig's fake-quantize
    modules. Train the result with ``nnx.grad`` / ``optax`` (model in training mode),
    then :func:`convert_fx`.
    """
    return _prepare(model, qconfig_mapping, example_inputs, prepare_custom_config, None,
                    backend_config, is_qat=True)


def _check_prepared(graph_module: Any) -> None:
    if not isinstance(graph_module, GraphModule):
        raise TypeError("graph_module must be the jaxq.fx.GraphModule returned by prepare_fx "
                        f"or prepare_qat_fx; got {type(graph_module).__name__}")
    if graph_module.graph.meta.get("stage") != "prepared":
        raise ValueError("graph_module was not prepared (stage="
                         f"{graph_module.graph.meta.get('stage')!r}); run prepare_fx or "
                         "prepare_qat_fx and calibrate / train it first")


def _convert(graph_module: Any, convert_custom_config: Any, remove_qconfig: bool,
             qconfig_mapping: Any, backend_config: Any, is_reference: bool) -> GraphModule:
    from jaxq.custom_config import ConvertCustomConfig
    from jaxq.fx.convert import convert_graph_module
    _check_prepared(graph_module)
    if convert_custom_config is not None:
        if isinstance(convert_custom_config, dict):
            convert_custom_config = ConvertCustomConfig.from_dict(convert_custom_config)
        if not isinstance(convert_custom_config, ConvertCustomConfig):
            raise TypeError("convert_custom_config must be a ConvertCustomConfig, a dict or "
                            f"None; got {type(convert_custom_config).__name__}")
        if convert_custom_config.observed_to_quantized_mapping:
            raise NotImplementedError("convert_custom_config.observed_to_quantized_mapping "
                                      "(custom modules) is not implemented in graph mode")
    if not isinstance(remove_qconfig, bool):
        raise TypeError(f"_remove_qconfig={remove_qconfig!r} must be a bool")
    if qconfig_mapping is not None:
        qconfig_mapping = _check_qconfig_mapping(qconfig_mapping)
    if backend_config is not None:
        _check_backend_config(backend_config)
    converted = convert_graph_module(graph_module, is_reference=is_reference,
                                     qconfig_mapping=qconfig_mapping)
    if remove_qconfig:
        from jaxq.eager._tree import named_modules
        for _, module in named_modules(converted.root):
            if "qconfig" in vars(module):
                delattr(module, "qconfig")
    return converted


def convert_fx(graph_module: GraphModule, convert_custom_config: Any = None,
               _remove_qconfig: bool = True, qconfig_mapping: Any = None,
               backend_config: Any = None) -> GraphModule:
    """Converts a calibrated / QAT-trained GraphModule to a quantized one (torch's).

    Linear / Conv (with fused ReLU / folded BatchNorm, and the QAT modules) become
    ``jaxq.nn.quantized`` / ``jaxq.nn.intrinsic.quantized`` modules on int8 kernels;
    add / mul (+relu) use the quantized ops; the model's inputs are quantized where
    observed and its outputs dequantized. The result is jittable (``nnx.jit``) and a
    second call with the same shapes does not recompile.

    Args:
      graph_module: the output of :func:`prepare_fx` / :func:`prepare_qat_fx` (unchanged).
      convert_custom_config: ``ConvertCustomConfig`` / dict / None (no custom modules).
      _remove_qconfig: delete the ``qconfig`` attributes left on float modules.
      qconfig_mapping: optional; ops whose qconfig it sets to None stay float.
      backend_config: accepted for torch parity (the prepare-time config is used).

    Raises:
      TypeError: ``graph_module`` is not a GraphModule. ValueError: it was not prepared.
    """
    return _convert(graph_module, convert_custom_config, _remove_qconfig, qconfig_mapping,
                    backend_config, is_reference=False)


def convert_to_reference_fx(graph_module: GraphModule, convert_custom_config: Any = None,
                            _remove_qconfig: bool = True, qconfig_mapping: Any = None,
                            backend_config: Any = None) -> GraphModule:
    """torch's reference representation: ``quantize -> dequantize -> float op (reference
    module with quantize-dequantized weights) -> quantize -> dequantize``.

    A fused module (``jaxq.nn.intrinsic.LinearReLU`` / ``ConvReLU{1,2,3}d``, ...) stays
    a fused container whose first child is the reference module
    (``nni.LinearReLU(nnqr.Linear, ReLU)``), as torch's; the QAT modules of a
    ``prepare_qat_fx`` model are left as they are (torch turns them into float, then
    reference, modules).
    """
    return _convert(graph_module, convert_custom_config, _remove_qconfig, qconfig_mapping,
                    backend_config, is_reference=True)
