"""``torch.ao.quantization.fuse_modules`` on NNX module trees.

``fuse_modules(model, [["conv1", "bn1", "relu1"], ...])`` replaces the first module of
each list with the fused module and the others with :class:`jaxq.nn.Identity`. Names are
dotted attribute paths (``"features.layers.0"`` for an ``nnx.Sequential`` entry).
Post-training fusion folds BatchNorm into the conv/linear weights and needs the model in
eval mode (``model.eval()``); :func:`fuse_modules_qat` builds the intrinsic containers
(``ConvBnReLU2d``...) that ``prepare_qat`` turns into QAT modules.

Every list is looked up and fused before the model is touched, so an error (a missing
name, a pattern that cannot be fused, a BatchNorm in the wrong mode) leaves the model
unchanged.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import jaxq.nn as jnn
  >>> class Block(nnx.Module):
  ...     def __init__(self):
  ...         self.conv = nnx.Conv(1, 4, (3, 3), rngs=nnx.Rngs(0))
  ...         self.bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
  ...         self.relu = jnn.ReLU()
  ...     def __call__(self, x):
  ...         return self.relu(self.bn(self.conv(x)))
  >>> block = Block()
  >>> block.eval()
  >>> fused = fuse_modules(block, ["conv", "bn", "relu"])
  >>> type(fused.conv).__name__, type(fused.bn).__name__
  ('ConvReLU2d', 'Identity')
  >>> bool(jnp.allclose(fused(jnp.ones((1, 5, 5, 1))), block(jnp.ones((1, 5, 5, 1))),
  ...                   atol=1e-5))
  True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx

from jaxq.eager._tree import check_module, copy_model, get_submodule, set_submodule
from jaxq.fuser_method_mappings import get_fuser_method, module_type_for_fusion
from jaxq.nn.modules import Identity

__all__ = ["fuse_known_modules", "fuse_modules", "fuse_modules_qat"]


def fuse_known_modules(mod_list: Sequence[Any], is_qat: bool,
                       additional_fuser_method_mapping: dict | None = None) -> list[Any]:
    """Fuses a list of modules: ``[fused, Identity(), ...]`` (torch's).

    Patterns: conv+bn, conv+bn+relu, conv+relu, linear+bn, linear+relu, bn+relu,
    convtranspose+bn (see :mod:`jaxq.fuser_method_mappings`).

    Raises:
      ValueError: no fuser for these module types (torch: AssertionError /
        NotImplementedError), or the fuser's own checks.
    """
    types = tuple(module_type_for_fusion(m) for m in mod_list)
    fuser_method = get_fuser_method(types, additional_fuser_method_mapping)
    fused = fuser_method(is_qat, *mod_list)
    # torch moves the first module's pre-hooks / last module's hooks onto the fused
    # module; jaxq's only hook-like state is the observer of an Observed<Cls> module.
    return [fused] + [Identity() for _ in range(1, len(mod_list))]


def _check_names(modules_to_fuse: Any) -> list[list[str]]:
    if isinstance(modules_to_fuse, str) or not isinstance(modules_to_fuse, Sequence) \
            or len(modules_to_fuse) == 0:
        raise TypeError("modules_to_fuse must be a list of module names or a list of "
                        f"such lists; got {modules_to_fuse!r}")
    if all(isinstance(item, str) for item in modules_to_fuse):
        groups = [list(modules_to_fuse)]
    else:
        groups = []
        for group in modules_to_fuse:
            if isinstance(group, str) or not isinstance(group, Sequence) or not group \
                    or not all(isinstance(name, str) for name in group):
                raise TypeError("modules_to_fuse must be a list of module names or a list "
                                f"of such lists; got the entry {group!r}")
            groups.append(list(group))
    seen: set[str] = set()
    for group in groups:
        for name in group:
            if name in seen:
                raise ValueError(f"modules_to_fuse names {name!r} more than once")
            seen.add(name)
    return groups


def _fuse_modules(model: nnx.Module, modules_to_fuse: Any, is_qat: bool, inplace: bool,
                  fuser_func: Callable, fuse_custom_config_dict: dict | None) -> nnx.Module:
    check_module(model)
    groups = _check_names(modules_to_fuse)
    if fuse_custom_config_dict is None:
        fuse_custom_config_dict = {}
    if not isinstance(fuse_custom_config_dict, dict):
        raise TypeError("fuse_custom_config_dict must be a dict (or None); got "
                        f"{type(fuse_custom_config_dict).__name__}")
    additional = fuse_custom_config_dict.get("additional_fuser_method_mapping", {})
    if not inplace:
        model = copy_model(model)
    replacements: list[tuple[str, Any]] = []
    for group in groups:
        mod_list = [get_submodule(model, name, "modules_to_fuse") for name in group]
        new_mod_list = fuser_func(mod_list, is_qat, additional)
        if len(new_mod_list) != len(group):
            raise ValueError(f"fuser_func returned {len(new_mod_list)} modules for the "
                             f"{len(group)} names {group}")
        replacements.extend(zip(group, new_mod_list))
    for name, module in replacements:
        set_submodule(model, name, module)
    return model


def fuse_modules(model: nnx.Module, modules_to_fuse: Any, inplace: bool = False,
                 fuser_func: Callable = fuse_known_modules,
                 fuse_custom_config_dict: dict | None = None) -> nnx.Module:
    """Fuses lists of modules for post-training quantization (torch's ``fuse_modules``).

    Args:
      model: the model (BatchNorms in eval mode: ``model.eval()``).
      modules_to_fuse: a list of dotted names, or a list of such lists.
      inplace: fuse in ``model`` itself; otherwise a fused copy is returned and
        ``model`` is untouched.
      fuser_func: ``(mod_list, is_qat, additional_fuser_method_mapping) -> new list``.
      fuse_custom_config_dict: ``{"additional_fuser_method_mapping": {types: fuser}}``.

    Returns:
      The model with fused modules.

    Raises:
      TypeError: ``model`` is not an ``nnx.Module`` or ``modules_to_fuse`` is malformed.
      ValueError: a name is not a submodule, the pattern cannot be fused, or a BatchNorm
        is in training mode. The model is unchanged.
    """
    return _fuse_modules(model, modules_to_fuse, False, inplace, fuser_func,
                         fuse_custom_config_dict)


def fuse_modules_qat(model: nnx.Module, modules_to_fuse: Any, inplace: bool = False,
                     fuser_func: Callable = fuse_known_modules,
                     fuse_custom_config_dict: dict | None = None) -> nnx.Module:
    """QAT version of :func:`fuse_modules`: Conv+BN(+ReLU) become intrinsic containers
    (``ConvBnReLU2d``...) instead of folded convolutions."""
    return _fuse_modules(model, modules_to_fuse, True, inplace, fuser_func,
                         fuse_custom_config_dict)
