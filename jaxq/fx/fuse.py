"""Graph-mode fusion (torch's ``fx/fuse.py``) on a :class:`~jaxq.fx.graph.GraphModule`.

Every BackendConfig pattern with a ``fuser_method`` (``(nnx.Conv, nnx.BatchNorm)``,
``(nnx.Conv, nnx.BatchNorm, jax.nn.relu)``, ``(nnx.Linear, jax.nn.relu)``, ...) is
matched on the graph (:func:`jaxq.fx.match.find_matches`); the fuser method (the same
ones eager :func:`jaxq.eager.fuse_modules` uses, from :mod:`jaxq.fuser_method_mappings`)
gets the matched modules, with the function itself (``jax.nn.relu``) at function
positions, and returns the fused module. It replaces the first module of the pattern at
that module's path; the first node keeps its id and now calls the fused module, the other
nodes of the pattern are removed and the users of the last node read the first node.
Modules that no node calls any more (a folded BatchNorm) are deleted from their parent,
as torch's ``GraphModule`` drops unused submodules.

Post-training (``is_qat=False``) Conv/Linear+BatchNorm are folded (the model's
BatchNorms must be in eval mode); QAT keeps intrinsic containers (``ConvBnReLU2d``) for
``prepare_qat_fx`` to swap for QAT modules.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxq.eager._tree import get_submodule, set_submodule
from jaxq.fx.graph import Graph, GraphModule, Ref
from jaxq.fx.match import find_matches

__all__ = ["fuse_graph_module", "module_type_getter", "fused_child_types"]


def module_type_getter(root: nnx.Module):
    """``node -> type`` of the module a ``call_module`` node calls (None otherwise)."""
    def module_type_of(node: Any) -> Any:
        if node.op != "call_module" or node.meta.get("observer"):
            return None
        return type(get_submodule(root, node.module_path, "module_path"))
    return module_type_of


def fused_child_types(fused: Any) -> tuple:
    """Object types of a fused container's children, ``jax.nn.relu`` for its ReLU (the
    key a QConfigMapping uses for the function)."""
    import jax

    from jaxq.nn.modules import ReLU
    layers = getattr(fused, "layers", None)
    if layers is None:
        return ()
    return tuple(jax.nn.relu if isinstance(m, ReLU) else type(m) for m in layers)


def _fusion_patterns(backend_config: Any, extra: dict | None) -> dict:
    patterns = {}
    for config in backend_config.configs:
        if config.fuser_method is not None and isinstance(config.pattern, tuple):
            patterns[config.pattern] = config.fuser_method
    if extra:
        patterns.update(extra)
    return patterns


def _remove_if_unused(root: nnx.Module, graph: Graph, path: str) -> None:
    if any(n.op == "call_module" and (n.module_path == path
                                      or n.module_path.startswith(path + "."))
           for n in graph.nodes):
        return
    parent_path, _, name = path.rpartition(".")
    parent = get_submodule(root, parent_path)
    if isinstance(parent, (nnx.List, nnx.Dict, nnx.Sequential)) or name.isdigit():
        return  # positional containers keep their layout; the module is simply not called
    if name in vars(parent):
        delattr(parent, name)


def fuse_graph_module(gm: GraphModule, backend_config: Any, is_qat: bool,
                      additional_fuser_method_mapping: dict | None = None) -> GraphModule:
    """A new GraphModule with the backend's fusion patterns fused (``gm`` is unchanged).

    Args:
      gm: a captured model.
      backend_config: a :class:`jaxq.backend_config.BackendConfig`.
      is_qat: build QAT containers instead of folding BatchNorm.
      additional_fuser_method_mapping: extra ``{forward pattern: fuser(is_qat, *mods)}``.

    Raises:
      ValueError: a fuser rejects its modules (e.g. BatchNorm in training mode for
        post-training fusion).
    """
    root = nnx.clone(gm.root)
    graph = gm.graph.copy()
    patterns = _fusion_patterns(backend_config, additional_fuser_method_mapping)
    matches = find_matches(graph, patterns, module_type_getter(root))
    seen: set[int] = set()
    removed: set[int] = set()
    redirect: dict[int, int] = {}
    fused_paths: list[str] = []
    for match in matches.values():
        if id(match) in seen:
            continue
        seen.add(id(match))
        modules = [get_submodule(root, n.module_path) if n.op == "call_module" else n.target
                   for n in match.nodes]
        fused = match.config(is_qat, *modules)
        first = match.root
        set_submodule(root, first.module_path, fused)
        first.target = type(fused)
        first.meta["fused_from"] = tuple(n.id for n in match.nodes)
        first.meta["fused_pattern"] = match.pattern
        child_types = fused_child_types(fused)
        if child_types:
            first.meta["fused_types"] = child_types
        first.meta["avals"] = match.last.meta.get("avals")
        for n in match.nodes[1:]:
            removed.add(n.id)
            if n.op == "call_module":
                fused_paths.append(n.module_path)
        redirect[match.last.id] = first.id
    nodes = []
    for node in graph.nodes:
        if node.id in removed:
            continue
        node.args = tuple(Ref(redirect[a.node_id], a.index)
                          if isinstance(a, Ref) and a.node_id in redirect else a
                          for a in node.args)
        nodes.append(node)
    graph.nodes = nodes
    for path in fused_paths:
        _remove_if_unused(root, graph, path)
    return GraphModule(root, graph)
