"""Walking and editing an NNX module tree the way torch walks ``nn.Module`` children.

torch's eager workflow works on ``named_children()`` / ``named_modules()`` and replaces a
child with ``setattr``. An NNX module's children are its attributes holding
``nnx.Module`` instances, in assignment order; ``nnx.List`` / ``nnx.Dict`` /
``nnx.Sequential`` are modules themselves whose children are named ``"0"``, ``"1"``...
(or the dict keys), like torch's ``ModuleList``/``Sequential``. A module's name is the
``"."``-joined attribute path (``"features.layers.0"``).

Only ``nnx.Module`` values are children: variables, ``nnx.Rngs``, functions and static
configuration are not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flax import nnx

__all__ = ["named_children", "named_modules", "get_submodule", "set_child", "set_submodule",
           "copy_model", "check_module"]


def check_module(model: Any, argument: str = "model") -> nnx.Module:
    """Raises TypeError naming ``argument`` unless ``model`` is an ``nnx.Module``."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"{argument} must be a flax.nnx.Module; got {type(model).__name__}")
    return model


def named_children(module: nnx.Module) -> Iterator[tuple[str, nnx.Module]]:
    """``(name, child)`` for every attribute of ``module`` that is an ``nnx.Module``.

    Order: attribute assignment order (torch: registration order). A module referenced by
    two attributes is reported once, under its first name (torch does the same).

    Example:
      >>> from flax import nnx
      >>> seq = nnx.Sequential(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
      >>> [name for name, _ in named_children(seq)]
      ['layers']
      >>> [name for name, _ in named_children(seq.layers)]
      ['0']
    """
    seen: set[int] = set()
    for name, value in list(vars(module).items()):
        if isinstance(value, nnx.Module) and id(value) not in seen:
            seen.add(id(value))
            yield name, value


def named_modules(module: nnx.Module, prefix: str = "") -> Iterator[tuple[str, nnx.Module]]:
    """``(dotted_name, module)`` for ``module`` (name ``prefix``) and all its descendants,
    parents before children, each module once."""
    seen: set[int] = set()

    def walk(node: nnx.Module, name: str) -> Iterator[tuple[str, nnx.Module]]:
        if id(node) in seen:
            return
        seen.add(id(node))
        yield name, node
        for child_name, child in named_children(node):
            yield from walk(child, f"{name}.{child_name}" if name else child_name)

    yield from walk(module, prefix)


def get_submodule(model: nnx.Module, target: str, argument: str = "target") -> Any:
    """The object at dotted attribute path ``target`` (``""`` is the model itself).

    Raises:
      ValueError: naming ``argument`` and the first path component that does not exist.
    """
    if not isinstance(target, str):
        raise TypeError(f"{argument}={target!r} must be a dotted module name (str)")
    if target == "":
        return model
    node: Any = model
    walked = []
    for token in target.split("."):
        attributes = vars(node) if isinstance(node, nnx.Module) else {}
        if token not in attributes:
            where = ".".join(walked) or type(model).__name__
            raise ValueError(f"{argument}={target!r}: {where!r} has no submodule {token!r}")
        node = attributes[token]
        walked.append(token)
    return node


def set_child(parent: nnx.Module, name: str, value: Any) -> None:
    """Replaces child ``name`` of ``parent`` (``setattr``; item assignment for nnx.List).

    A module replacing a static entry (``nnx.relu`` in an ``nnx.Sequential``) is marked
    as data with ``nnx.data``, as NNX requires.
    """
    if isinstance(value, nnx.Module):
        value = nnx.data(value)
    if isinstance(parent, nnx.List):
        parent[int(name)] = value
    elif isinstance(parent, nnx.Dict):
        parent[name] = value
    else:
        setattr(parent, name, value)


def set_submodule(model: nnx.Module, target: str, value: Any) -> None:
    """Replaces the module at dotted path ``target`` (torch's ``_set_module``)."""
    parent_name, _, name = target.rpartition(".")
    set_child(get_submodule(model, parent_name), name, value)


def copy_model(model: nnx.Module) -> nnx.Module:
    """A copy for torch's ``copy.deepcopy``: ``nnx.clone`` (new module objects and
    variables; shared references preserved within the copy).

    Static attributes (configuration, qconfigs, functions such as ``jax.nn.relu``) are
    shared with the original rather than deep-copied, so function identities survive
    (fusion patterns compare them) and the copy's graphdef equals the original's.
    """
    return nnx.clone(model)
