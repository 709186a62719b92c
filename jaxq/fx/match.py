"""Pattern matching and qconfig resolution on a captured :class:`~jaxq.fx.graph.Graph`.

torch's ``fx/match_utils._find_matches`` and ``fx/qconfig_mapping_utils
._generate_node_name_to_qconfig`` for jaxq graphs:

* patterns are the BackendConfig's forward-order patterns (``nnx.Conv``,
  ``(nnx.Conv, nnx.BatchNorm, jax.nn.relu)``, ``operator.add``, ``"reshape"``); a chain
  ``(A, B, C)`` matches node ``c`` (target C) whose first argument is node ``b`` (target
  B) whose first argument is node ``a``; every node but the last must have exactly one
  user (torch's ``max_uses=1``). Nodes are visited last to first and longer patterns are
  tried first, as torch does; a node belongs to at most one match.
* element matching: a module class matches a ``call_module`` node whose module has
  exactly that type; a function matches a ``call_function`` node with that target
  (``operator.add`` and ``jnp.add`` are the same jaxpr ``add``: both match it, as do
  ``operator.mul`` / ``jnp.multiply``); a string matches a ``call_method`` node.
* Patterns written in torch's complex (reversed nested) format only and patterns with a
  weight / bias input index (functional ``lax.dot_general`` / ``lax.conv_general_dilated``
  patterns) are not matched: a jaxq graph's weights live inside leaf modules.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import jax.numpy as jnp

from jaxq.fx.graph import Graph, Node, Ref

__all__ = ["Match", "find_matches", "node_matches", "object_type_aliases",
           "node_qconfig", "sorted_patterns"]

_ALIASES = {
    operator.add: (operator.add, jnp.add),
    operator.mul: (operator.mul, jnp.multiply),
    operator.sub: (operator.sub, jnp.subtract),
}


def object_type_aliases(target: Any) -> tuple:
    """The config object types a node target stands for (``add`` -> operator.add, jnp.add)."""
    return _ALIASES.get(target, (target,))


def node_matches(node: Node, element: Any, module_type: Any) -> bool:
    """Whether ``node`` matches one pattern ``element``; ``module_type`` is the type of the
    module a ``call_module`` node calls (None otherwise)."""
    from jaxq.fuser_method_mappings import MatchAllNode
    if element is MatchAllNode:
        return True
    if isinstance(element, type) and node.op == "call_module" \
            and not node.meta.get("observer"):
        return module_type is element
    if isinstance(element, str):
        return node.op == "call_method" and node.target == element
    if node.op == "call_function":
        return any(element is alias for alias in object_type_aliases(node.target)) \
            or element is node.target
    return False


@dataclasses.dataclass
class Match:
    """One matched pattern.

    Attributes:
      pattern: the BackendConfig pattern (forward order).
      nodes: the matched nodes, in execution order (``nodes[0]`` is the root / input node,
        ``nodes[-1]`` the last node whose output leaves the pattern).
      config: the BackendPatternConfig (or, for fusion, the fuser method).
    """

    pattern: Any
    nodes: list[Node]
    config: Any

    @property
    def root(self) -> Node:
        return self.nodes[0]

    @property
    def last(self) -> Node:
        return self.nodes[-1]


def sorted_patterns(patterns: dict) -> list[tuple[Any, Any]]:
    """Longest patterns first (torch's ``_sorted_patterns_dict``), stable otherwise."""
    def length(pattern: Any) -> int:
        return len(pattern) if isinstance(pattern, tuple) else 1
    return sorted(patterns.items(), key=lambda item: -length(item[0]))


def _chain(graph_by_id: dict[int, Node], users: dict[int, int], node: Node,
           pattern: tuple, module_type_of) -> list[Node] | None:
    nodes = [node]
    current = node
    for element in reversed(pattern[:-1]):
        if not current.args or not isinstance(current.args[0], Ref) \
                or current.args[0].index != 0:
            return None
        previous = graph_by_id[current.args[0].node_id]
        if previous.num_outputs != 1 or users.get(previous.id, 0) != 1 \
                or not node_matches(previous, element, module_type_of(previous)):
            return None
        nodes.append(previous)
        current = previous
    return list(reversed(nodes))


def find_matches(graph: Graph, patterns: dict, module_type_of) -> dict[int, Match]:
    """``node id -> Match`` for every node inside a matched pattern.

    Args:
      graph: the graph.
      patterns: ``{forward pattern: config}``.
      module_type_of: ``node -> type`` of the module a call_module node calls.
    """
    by_id = graph.by_id()
    users: dict[int, int] = {}
    for node in graph.nodes:
        for arg in node.args:
            if isinstance(arg, Ref):
                users[arg.node_id] = users.get(arg.node_id, 0) + 1
    ordered = sorted_patterns(patterns)
    matches: dict[int, Match] = {}
    for node in reversed(graph.nodes):
        if node.id in matches or node.op in ("placeholder", "get_attr", "output"):
            continue
        for pattern, config in ordered:
            chain = pattern if isinstance(pattern, tuple) else (pattern,)
            if not node_matches(node, chain[-1], module_type_of(node)):
                continue
            nodes = _chain(by_id, users, node, chain, module_type_of)
            if nodes is None or any(n.id in matches for n in nodes):
                continue
            match = Match(pattern, nodes, config)
            for n in nodes:
                matches[n.id] = match
            break
    return matches


def node_qconfig(qconfig_mapping: Any, node: Node, module_type: Any) -> Any:
    """The QConfig of ``node`` with torch's precedence (see :mod:`jaxq.qconfig_mapping`).

    ``call_module``: the module's type and path, call order within its parent;
    ``call_function``: the function (and its aliases), then the enclosing module's type /
    name, then call order; ``call_method``: the method name, then the enclosing module.
    A fused module (``node.meta["fused_types"]``) takes the qconfig its first constituent
    type would get unless its own type is configured (torch requires the constituents'
    object-type qconfigs to agree, see :func:`check_fused_qconfigs`).
    """
    if node.op == "call_module":
        object_type = module_type
        fused_types = node.meta.get("fused_types")
        if fused_types and module_type not in qconfig_mapping.object_type_qconfigs:
            object_type = fused_types[0]
        return qconfig_mapping.qconfig_for_module(node.module_path, object_type,
                                                  node.call_index)
    if node.op == "call_function":
        for alias in object_type_aliases(node.target):
            if alias in qconfig_mapping.object_type_qconfigs:
                return qconfig_mapping.qconfig_for_function(alias, node.module_path,
                                                            node.scope_type, node.call_index)
        return qconfig_mapping.qconfig_for_function(node.target, node.module_path,
                                                    node.scope_type, node.call_index)
    if node.op == "call_method":
        return qconfig_mapping.qconfig_for_method(node.target, node.module_path,
                                                  node.scope_type)
    return None


def check_fused_qconfigs(qconfig_mapping: Any, fused_types: tuple) -> None:
    """torch's ``_update_qconfig_for_fusion`` check on a fused module's children types.

    When the mapping has any object-type entry, every child type's entry (None when
    absent) must equal the first child's.

    Raises:
      ValueError: naming the types when their object-type qconfigs differ (torch:
        LookupError).
    """
    from jaxq.qconfig import qconfig_equals
    entries = qconfig_mapping.object_type_qconfigs
    if not entries:
        return
    first = entries.get(fused_types[0])
    for t in fused_types[1:]:
        if not qconfig_equals(entries.get(t), first):
            names = ", ".join(getattr(t, "__name__", str(t)) for t in fused_types)
            raise ValueError("During fusion, we need to specify the same qconfigs for all "
                             f"module types in ({names}); the qconfig_mapping gives them "
                             "different object_type qconfigs")
