"""Utilities for captured ("exported") models: ``torch.ao.quantization.pt2e.export_utils``.

In torch an exported graph no longer reacts to ``model.train()`` / ``model.eval()``, so
``move_exported_model_to_eval`` / ``_to_train`` rewrite the dropout and batch-norm
patterns of the graph. A jaxq captured graph keeps leaf modules (``nnx.Dropout``,
``nnx.BatchNorm``) as ``call_module`` nodes that call the real module in ``root``, so
switching modes is NNX's own ``model.eval()`` / ``model.train()`` on the graph module; these
functions do exactly that (and are idempotent, like torch's).

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.fx.graph import capture
  >>> gm = capture(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), (jnp.ones((1, 2)),))
  >>> model_is_exported(gm), model_is_exported(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
  (True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from jaxq.fx.graph import Graph, GraphModule

__all__ = [
    "model_is_exported", "WrapperModule", "move_exported_model_to_eval",
    "move_exported_model_to_train", "allow_exported_model_train_eval",
]


class WrapperModule(nnx.Module):
    """Wraps a callable in an ``nnx.Module`` so that it can be captured.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> WrapperModule(jax.nn.relu)(jnp.array([-1.0, 2.0])).tolist()
      [0.0, 2.0]
    """

    def __init__(self, fn: Callable[..., Any]):
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def model_is_exported(m: Any) -> bool:
    """True when ``m`` is a captured model (torch: a graph module from ``torch.export``).

    A model counts as captured when it holds a :class:`jaxq.fx.graph.Graph` whose nodes
    carry capture-time shapes (``meta["avals"]``; torch checks ``meta["val"]``): the
    :class:`jaxq.fx.graph.GraphModule` from ``capture`` and the models prepare / convert
    build from it. An unmodified ``nnx.Module`` (or anything else) is not.
    """
    graph = getattr(m, "graph", None) if isinstance(m, nnx.Module) else None
    return isinstance(graph, Graph) and any("avals" in n.meta for n in graph.nodes)


def _check_exported(model: Any) -> None:
    if not model_is_exported(model):
        raise TypeError("model must be a captured model (jaxq.fx.graph.capture, "
                        f"prepare_fx / convert_fx); got {type(model).__name__}")


def move_exported_model_to_eval(model: GraphModule) -> GraphModule:
    """Puts a captured model's dropout / batch-norm modules in eval mode; returns it.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxq.fx.graph import capture
      >>> gm = capture(nnx.BatchNorm(2, rngs=nnx.Rngs(0)), (jnp.ones((3, 2)),))
      >>> move_exported_model_to_eval(gm).root.use_running_average
      True
    """
    _check_exported(model)
    model.eval()
    return model


def move_exported_model_to_train(model: GraphModule) -> GraphModule:
    """Puts a captured model's dropout / batch-norm modules in train mode; returns it."""
    _check_exported(model)
    model.train()
    return model


def allow_exported_model_train_eval(model: GraphModule) -> GraphModule:
    """Lets ``model.train()`` / ``model.eval()`` switch a captured model's modes.

    A jaxq captured model already honours NNX's ``train()`` / ``eval()`` (its dropout and
    batch-norm nodes call the real modules), so this only checks ``model`` and returns it.
    As in torch, Python branches on a training flag were resolved at capture time.
    """
    _check_exported(model)
    return model
