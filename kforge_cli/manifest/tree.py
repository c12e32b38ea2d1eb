"""A torch-free module tree: the one description both builders read.

A :class:`Node` stands for one ``torch.nn.Module`` of the reference: its own
parameters and persistent buffers in registration order, then its child
modules in registration order. That is all torch consults to name and order
``named_parameters()`` (a module's own parameters, then each child's subtree)
and ``state_dict()``, so walking a Node tree the same way yields the same
names in the same order without torch. ``kforge_cli.model`` turns the same
tree into meta-device modules.

Nodes are immutable once built, so identical subtrees (the 80 layers of a
dense model, the experts of one MoE layer) are one shared object: describing a
model costs one node per distinct module, and counting its tensors needs no
expansion. A weight shared between two modules is a :class:`Tie` naming the
parameter by a path relative to an ancestor, never by object identity, so
sharing a subtree never ties its weights by accident.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kforge_cli.manifest.errors import ModelBuildError, safe_repr, show
from kforge_cli.manifest.result import ParamInfo

INT64_MAX = 2**63 - 1
# Parameters are created in float32; torch sizes a tensor's storage in bytes as an int64.
PARAMETER_BYTES = 4

# Attributes of a fresh torch.nn.ModuleDict (torch 2.13; a test compares this to
# the installed torch). ModuleDict.__setitem__ refuses a key that would shadow one.
MODULE_DICT_ATTRIBUTES = frozenset({
    "T_destination", "__annotations__", "__call__", "__class__", "__contains__", "__delattr__",
    "__delitem__", "__dict__", "__dir__", "__doc__", "__eq__", "__format__", "__ge__",
    "__getattr__", "__getattribute__", "__getitem__", "__getstate__", "__gt__", "__hash__",
    "__init__", "__init_subclass__", "__iter__", "__le__", "__len__", "__lt__", "__module__",
    "__ne__", "__new__", "__reduce__", "__reduce_ex__", "__repr__", "__setattr__", "__setitem__",
    "__setstate__", "__sizeof__", "__str__", "__subclasshook__", "__weakref__", "_apply",
    "_backward_hooks", "_backward_pre_hooks", "_buffers", "_call_impl", "_compiled_call_impl",
    "_forward_hooks", "_forward_hooks_always_called", "_forward_hooks_with_kwargs",
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_get_backward_hooks",
    "_get_backward_pre_hooks", "_get_name", "_is_full_backward_hook", "_load_from_state_dict",
    "_load_state_dict_post_hooks", "_load_state_dict_pre_hooks",
    "_maybe_warn_non_full_backward_hook", "_modules", "_named_members",
    "_non_persistent_buffers_set", "_parameters", "_register_load_state_dict_pre_hook",
    "_register_state_dict_hook", "_replicate_for_data_parallel", "_save_to_state_dict",
    "_slow_forward", "_state_dict_hooks", "_state_dict_pre_hooks", "_version",
    "_wrapped_call_impl", "add_module", "apply", "bfloat16", "buffers", "call_super_init",
    "children", "clear", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr",
    "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half",
    "ipu", "items", "keys", "load_state_dict", "modules", "mtia", "named_buffers",
    "named_children", "named_modules", "named_parameters", "parameters", "pop",
    "register_backward_hook", "register_buffer", "register_forward_hook",
    "register_forward_pre_hook", "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook", "register_module",
    "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to",
    "to_empty", "train", "training", "type", "update", "values", "xpu", "zero_grad",
})

MODULE_DICT = "ModuleDict"
MODULE_LIST = "ModuleList"


@dataclass(frozen=True, slots=True)
class Tensor:
    shape: tuple[int, ...]
    # requires_grad=False from construction on (e.g. MoT's unused shared norm).
    frozen: bool = False
    numel: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: a shared layer's tensors are listed thousands of times.
        object.__setattr__(self, "numel", math.prod(self.shape))


@dataclass(frozen=True, slots=True)
class Tie:
    """This slot holds the parameter ``target`` of the module ``up`` levels above the holder."""

    up: int
    target: str

    def full_name(self, holder_path: list[str]) -> str:
        return ".".join([*holder_path[:len(holder_path) - self.up], self.target])


class Node:
    __slots__ = ("buffers", "children", "external", "kind", "parameters")

    def __init__(self, kind: str, parameters: dict[str, Tensor | Tie] | None = None, *,
                 buffers: dict[str, Tensor] | None = None, children: dict[str, Node] | None = None,
                 external: Any = None) -> None:
        # The reference class this stands for (names the torch stand-in's class).
        self.kind = kind
        self.parameters = parameters or {}
        self.buffers = buffers or {}
        self.children = children or {}
        # A ready module supplied by the torch builder (a HuggingFace tower), whose
        # contents this description does not know.
        self.external = external

    def __repr__(self) -> str:
        return (f"Node({self.kind}, {len(self.parameters)} parameters, "
                f"{len(self.children)} children)")


def tensor(*shape: int, frozen: bool = False) -> Tensor:
    """A parameter shape, refused as torch refuses it: sizes past int64 storage."""
    numel = math.prod(shape)
    if numel * PARAMETER_BYTES > INT64_MAX or any(size > INT64_MAX for size in shape):
        raise ModelBuildError(
            f"torch cannot build this model: a parameter of shape {show(tuple(shape))} "
            f"({show(numel)} elements) is past the sizes torch can allocate", None,
            "check model.dim, vocab_size and the head counts for typos")
    return Tensor(tuple(shape), frozen)


def check_module_name(name: str, key: str) -> None:
    """Config-supplied names (modalities) key ModuleDicts; refuse those torch refuses."""
    if name in MODULE_DICT_ATTRIBUTES:
        reason = "it is an attribute of torch's ModuleDict"
    elif "." in name:
        reason = "module names cannot contain '.'"
    elif name == "":
        reason = "module names cannot be empty"
    else:
        return
    raise ModelBuildError(f"{key}: {safe_repr(name)} cannot name a module ({reason})", key,
                          'use plain identifiers such as "image", "text", "video"')


def keyed(names: Iterable[str], make: Callable[[str], Node], key: str) -> Node:
    """A ModuleDict keyed by config-supplied names; ``key`` is the knob that lists them."""
    children: dict[str, Node] = {}
    for name in names:
        child = make(name)  # built before the key is checked, as ``d[name] = make()`` does
        check_module_name(name, key)
        children[name] = child
    return Node(MODULE_DICT, children=children)


def module_list(items: Iterable[Node]) -> Node:
    return Node(MODULE_LIST, children={str(i): item for i, item in enumerate(items)})


def has_external(root: Node) -> bool:
    """Whether the tree holds a module only torch can list (a loaded HuggingFace tower)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node.external is not None:
            return True
        for child in node.children.values():
            if id(child) not in seen:  # a repeated layer is walked once
                seen.add(id(child))
                stack.append(child)
    return False


def count_tensors(root: Node) -> int:
    """Parameter tensors the tree lists (a tie counts once), without expanding shared subtrees."""
    counts: dict[int, int] = {}

    def count(node: Node) -> int:
        known = counts.get(id(node))
        if known is None:
            own = sum(1 for p in node.parameters.values() if isinstance(p, Tensor))
            known = counts[id(node)] = own + sum(count(c) for c in node.children.values())
        return known

    return count(root)


def module_paths(root: Node, kind: str) -> list[str]:
    """Dotted paths of the modules of class ``kind`` (not looking inside one), in registration order."""
    holds: dict[int, bool] = {}

    def contains(node: Node) -> bool:
        # Memoized per node: a shared layer or expert is examined once.
        known = holds.get(id(node))
        if known is None:
            known = holds[id(node)] = node.kind == kind or any(contains(c) for c in node.children.values())
        return known

    paths: list[str] = []

    def walk(node: Node, path: str) -> None:
        if node.kind == kind:
            paths.append(path)
            return
        for name, child in node.children.items():
            if contains(child):
                walk(child, f"{path}.{name}" if path else name)

    walk(root, "")
    return paths


def flatten(root: Node) -> tuple[list[ParamInfo], list[ParamInfo]]:
    """(parameters in named_parameters() order, persistent buffers in state_dict() order)."""
    shared = _shared_subtrees(root)
    relative: dict[int, tuple[list[tuple[str, Tensor]], list[tuple[str, Tensor]]]] = {}
    targets: set[str] = set()

    def walk(node: Node, prefix: str, parameters: list[tuple[str, Any]],
             buffers: list[tuple[str, Tensor]]) -> None:
        for name, entry in node.parameters.items():
            if type(entry) is Tie:
                target = entry.full_name(prefix.split(".")[:-1])  # a str entry: the tie's target
                targets.add(target)
                parameters.append((prefix + name, target))
            else:
                parameters.append((prefix + name, entry))
        for name, buffer in node.buffers.items():
            buffers.append((prefix + name, buffer))
        for name, child in node.children.items():
            child_prefix = f"{prefix}{name}."
            if id(child) in shared:
                # A repeated subtree (a layer, an expert) is listed once, then renamed.
                listed = relative.get(id(child))
                if listed is None:
                    listed = relative[id(child)] = ([], [])
                    walk(child, "", *listed)
                parameters.extend([(child_prefix + n, t) for n, t in listed[0]])
                buffers.extend([(child_prefix + n, t) for n, t in listed[1]])
            else:
                walk(child, child_prefix, parameters, buffers)

    parameters: list[tuple[str, Any]] = []
    buffers: list[tuple[str, Tensor]] = []
    with gc_paused():
        walk(root, "", parameters, buffers)
        if targets:
            parameters = _resolve_ties(parameters, targets)
        return ([ParamInfo(name, t.shape, t.numel, t.frozen) for name, t in parameters],
                [ParamInfo(name, t.shape, t.numel, False) for name, t in buffers])


def _shared_subtrees(root: Node) -> set[int]:
    """Ids of nodes the tree holds more than once and that hold no tie (its target is positional)."""
    uses: dict[int, int] = {}
    holds_tie: dict[int, bool] = {}

    def visit(node: Node) -> bool:
        key = id(node)
        if key in uses:
            uses[key] += 1
            return holds_tie[key]
        uses[key] = 1
        tie = any(type(entry) is Tie for entry in node.parameters.values())
        for child in node.children.values():
            tie = visit(child) or tie
        holds_tie[key] = tie
        return tie

    visit(root)
    return {key for key, count in uses.items() if count > 1 and not holds_tie[key]}


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Listing a big model creates many objects and no garbage; the cyclic
    collector's repeated scans would otherwise dominate the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _resolve_ties(entries: list[tuple[str, Any]], targets: set[str]) -> list[tuple[str, Any]]:
    # torch lists a shared parameter once, under the first name it meets it by.
    tensors = {name: entry for name, entry in entries if name in targets}
    missing = targets - tensors.keys()
    if missing:
        raise AssertionError(f"tie to an undescribed parameter: {sorted(missing)}")
    seen: set[str] = set()
    resolved: list[tuple[str, Any]] = []
    for name, entry in entries:
        group = entry if isinstance(entry, str) else name
        if group in targets:
            if group in seen:
                continue
            seen.add(group)
            entry = tensors[group]
        resolved.append((name, entry))
    return resolved
