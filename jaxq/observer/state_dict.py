"""Saving and restoring the observer statistics of a whole NNX model.

Keys follow torch's ``state_dict`` naming: the dotted module path, then the buffer
name, e.g. ``"block.act_obs.min_val"`` or ``"fq.activation_post_process.max_val"``.
Every :class:`~jaxq.observer.base.ObserverState` variable of the model is included
(torch keeps only keys containing ``activation_post_process``; in an NNX model the
variable type identifies the statistics instead, wherever the observer lives).

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxq.observer import MinMaxObserver, get_observer_state_dict, load_observer_state_dict
  >>> class Net(nnx.Module):
  ...     def __init__(self):
  ...         self.obs = MinMaxObserver()
  >>> net = Net(); _ = net.obs(jnp.array([-1.0, 3.0]))
  >>> saved = get_observer_state_dict(net)
  >>> sorted(saved)
  ['obs.max_val', 'obs.min_val']
  >>> other = Net(); load_observer_state_dict(other, saved)
  >>> float(other.obs.max_val)
  3.0
"""

from __future__ import annotations

import collections
from typing import Any, Iterator

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxq.observer.base import ObserverState

__all__ = ["get_observer_state_dict", "load_observer_state_dict"]


def _join(parts) -> str:
    return ".".join(str(p) for p in parts)


def _observer_entries(model: Any) -> Iterator[tuple[str, ObserverState, str | None]]:
    """(key, variable, entry) for every statistic; entry is the dict key or None."""
    for path, node in nnx.iter_graph(model):
        if not isinstance(node, ObserverState):
            continue
        value = node.get_value()
        if isinstance(value, dict):
            # A module's `state` variable holds its buffers; name them after the module.
            prefix = path[:-1] if path and path[-1] == "state" else path
            for name in value:
                yield _join((*prefix, name)), node, name
        else:
            yield _join(path), node, None


def _owner_eps(model: Any) -> dict[str, float]:
    """``"<module path>.eps"`` -> eps for observers with a float eps (torch saves eps
    as a buffer; jaxq keeps it static)."""
    eps = {}
    for path, node in nnx.iter_graph(model):
        core = getattr(node, "core", None) if isinstance(node, nnx.Module) else None
        value = getattr(core, "eps", None)
        if isinstance(value, float):
            eps[_join((*path, "eps"))] = value
    return eps


def get_observer_state_dict(model: Any) -> collections.OrderedDict[str, Any]:
    """The observer and fake-quantize statistics of ``model`` (torch's
    ``get_observer_state_dict``).

    Args:
      model: any NNX module tree (an observer itself works too).

    Returns:
      An ordered dict of dotted key -> array (shapes and dtypes as stored).
    """
    result: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for key, variable, name in _observer_entries(model):
        value = variable.get_value()
        result[key] = value[name] if name is not None else value
    return result


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_observer_state_dict(model: Any, state_dict: dict[str, Any]) -> None:
    """Loads statistics saved by :func:`get_observer_state_dict` into ``model``.

    Values are cast to the stored dtype. A per-channel or block-wise state that is
    still unsized (shape ``[0]``) takes the loaded shape, as torch resizes its
    per-channel buffers; any other shape change is an error. Torch state dicts
    (tensors as values) load too; their ``eps`` entries must equal the observer's eps.

    Raises:
      ValueError: a statistic of ``model`` missing from ``state_dict``, a key of
        ``state_dict`` that is not a statistic of ``model``, or a shape mismatch.
    """
    entries = list(_observer_entries(model))
    missing = [key for key, _, _ in entries if key not in state_dict]
    if missing:
        raise ValueError(f"Missing keys for observer {missing} in state_dict")
    known = {key for key, _, _ in entries}
    eps = _owner_eps(model)
    unexpected = []
    for key in state_dict:
        if key in known:
            continue
        if key in eps:
            loaded = _as_array(state_dict[key]).astype(np.float32).reshape(-1)
            if loaded.size != 1 or loaded[0] != np.float32(eps[key]):
                raise ValueError(f"state_dict[{key!r}]={loaded} differs from the observer's "
                                 f"eps={eps[key]} (jaxq keeps eps static)")
            continue
        unexpected.append(key)
    if unexpected:
        raise ValueError(f"Unexpected keys for observer {unexpected} in state_dict")
    updates: dict[int, tuple[ObserverState, Any]] = {}
    for key, variable, name in entries:
        current_value = updates.get(id(variable), (variable, variable.get_value()))[1]
        current = current_value[name] if name is not None else current_value
        loaded = _as_array(state_dict[key])
        if loaded.shape != current.shape and current.size != 0:
            raise ValueError(f"state_dict[{key!r}] has shape {loaded.shape} but the "
                             f"observer expects {current.shape}")
        loaded = jnp.asarray(loaded.astype(current.dtype))
        if name is not None:
            current_value = {**current_value, name: loaded}
        else:
            current_value = loaded
        updates[id(variable)] = (variable, current_value)
    for variable, value in updates.values():
        variable.set_value(value)
