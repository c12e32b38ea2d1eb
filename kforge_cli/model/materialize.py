"""A description tree (``kforge_cli.manifest.tree``) as torch modules on the meta device.

One module per node, each of a class named after the reference class the node
stands for; parameters are bare ``torch.empty`` tensors on ``meta`` (no
initializer runs, nothing is allocated).
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from kforge_cli.manifest.tree import MODULE_DICT, MODULE_LIST, Node, Tensor, Tie

META = torch.device("meta")


@cache
def _module_class(kind: str) -> type[nn.Module]:
    if kind == MODULE_DICT:
        return nn.ModuleDict
    if kind == MODULE_LIST:
        return nn.ModuleList
    return type(kind, (nn.Module,), {"__module__": __name__})


def materialize(root: Node) -> nn.Module:
    ties: list[tuple[nn.Module, str, nn.Module, str]] = []
    module = _build(root, [], ties)
    for holder, name, anchor, target in ties:
        # Same Parameter object in both places: the slot keeps its registration position.
        holder.register_parameter(name, anchor.get_parameter(target))
    return module


def _build(node: Node, ancestors: list[nn.Module],
           ties: list[tuple[nn.Module, str, nn.Module, str]]) -> nn.Module:
    if node.external is not None:
        return node.external
    module = _module_class(node.kind)()
    for name, entry in node.parameters.items():
        if isinstance(entry, Tie):
            module.register_parameter(name, None)  # filled once the whole tree exists
            anchor = ancestors[len(ancestors) - entry.up] if entry.up else module
            ties.append((module, name, anchor, entry.target))
        else:
            module.register_parameter(name, _parameter(entry))
    for name, buffer in node.buffers.items():
        module.register_buffer(name, torch.empty(buffer.shape, device=META))
    ancestors.append(module)
    for name, child in node.children.items():
        module.add_module(name, _build(child, ancestors, ties))
    ancestors.pop()
    return module


def _parameter(spec: Tensor) -> nn.Parameter:
    return nn.Parameter(torch.empty(spec.shape, device=META), requires_grad=not spec.frozen)
