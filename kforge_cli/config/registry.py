"""Named components, by category, as the KempnerForge trainer resolves them.

The reference fills its registry as a side effect of importing its model,
training and data modules. kforge cannot import those (no torch here), so the
names the trainer knows at commit 5666d0d are declared below; plugins add more
through the ``kforge_cli.plugins`` entry-point group (see ``plugins.py``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from kforge_cli.records import record


class RegistryError(KeyError):
    """Unknown name in a category; the message lists what is registered."""

    def __init__(self, category: str, name: Any, available: list[str]) -> None:
        self.category = category
        self.name = name
        self.available = available
        super().__init__(f"Unknown {category}: {name!r}. Available: {sorted(available)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


@record(frozen=True)
class Component:
    """What kforge knows about a registered name: enough to document it."""

    name: str
    doc: str = ""
    origin: str = "kempnerforge"


class Registry:
    def __init__(self, on_miss: Callable[[Registry], None] | None = None) -> None:
        self._stores: dict[str, dict[str, Any]] = {}
        # Runs once, the first time a lookup misses or a full listing is asked
        # for: plugins are loaded then, so the common case never pays for them.
        self._on_miss = on_miss

    def _fill_on_miss(self) -> bool:
        """Run the miss hook if it has not run yet; True when callers should look again."""
        hook, self._on_miss = self._on_miss, None  # cleared first: plugins may look names up
        if hook is None:
            return False
        hook(self)
        return True

    def _store(self, category: str) -> dict[str, Any]:
        return self._stores.setdefault(category, {})

    def register(self, category: str, name: str, obj: Any) -> Any:
        store = self._store(category)
        if name in store:
            raise ValueError(f"{category}/{name} is already registered")
        store[name] = obj
        return obj

    def get(self, category: str, name: Any) -> Any:
        store = self._store(category)
        try:
            return store[name]
        except KeyError:
            if self._fill_on_miss():
                return self.get(category, name)
            raise RegistryError(category, name, list(store)) from None
        except TypeError:
            # An unhashable value (a list from TOML) is just another unknown name.
            raise RegistryError(category, name, self.list(category)) from None

    def list(self, category: str) -> list[str]:
        self._fill_on_miss()
        return list(self._store(category))

    def categories(self) -> builtins.list[str]:  # `list` here is the method above
        self._fill_on_miss()
        return list(self._stores)

    def __contains__(self, item: tuple[str, Any]) -> bool:
        category, name = item
        try:
            found = name in self._store(category)
        except TypeError:
            return False
        return found or (self._fill_on_miss() and name in self._store(category))

    def decorator(self, category: str, name: str) -> Callable[[Any], Any]:
        def wrap(obj: Any) -> Any:
            return self.register(category, name, obj)

        return wrap

    # The reference's convenience spellings, so plugin code reads the same.
    def register_vlm_config(self, name: str) -> Callable[[Any], Any]:
        return self.decorator("vlm_config", name)

    def get_vlm_config(self, name: Any) -> Any:
        return self.get("vlm_config", name)

    def list_vlm_configs(self) -> builtins.list[str]:
        return self.list("vlm_config")

    def register_component(self, category: str, name: str, doc: str = "",
                           origin: str = "kempnerforge") -> Component:
        return self.register(category, name, Component(name, doc, origin))


def _load_plugins(target: Registry) -> None:
    from kforge_cli.plugins import load_plugins

    load_plugins(target)


registry = Registry(on_miss=_load_plugins)

# Names the reference registers at import time (commit 5666d0d), with what each is.
_BUILTIN_COMPONENTS: dict[str, dict[str, str]] = {
    "model": {"transformer": "decoder-only Transformer (the text backbone)"},
    "optimizer": {
        "adamw": "AdamW with decoupled weight decay (fused when CUDA is available)",
        "lion": "Lion: sign-based momentum, one moment buffer",
        "schedule_free_adamw": "Schedule-Free AdamW: iterate averaging instead of an LR schedule",
        "muon": "Muon on 2D+ weights (Newton-Schulz orthogonalized), AdamW on the rest",
    },
    "scheduler": {
        "cosine": "linear warmup then cosine decay to min_lr_ratio",
        "linear": "linear warmup then linear decay",
        "wsd": "warmup, stable, decay",
        "constant": "linear warmup then a flat LR",
        "rex": "warmup then (1 - t/T)^rex_alpha decay",
        "none": "constant LR (for schedule-free optimizers)",
    },
    "loss": {
        "cross_entropy": "token-level cross entropy",
        "chunked_cross_entropy": "cross entropy computed in chunks of train.ce_chunk_size tokens",
    },
    "vision_encoder": {
        "random": "parameter-free stub producing random patch features (tests, smoke runs)",
        "siglip2": "Hugging Face SigLIP2 vision tower (no CLS token)",
        "clip": "Hugging Face CLIP vision tower (CLS token stripped)",
    },
    "adapter": {
        "mlp_2layer": "Linear -> activation -> Linear, keeps the token count",
        "linear": "a single Linear projection, keeps the token count",
        "avgpool": "window x window average pooling over the patch grid, then a projection",
        "attentional_pool": "attention pooling per window over the patch grid, then a projection",
    },
    "router": {
        "softmax_topk": "softmax over experts, top-k selection",
        "sigmoid_topk": "sigmoid scores with a load-balancing bias, top-k selection",
    },
    "norm": {"rmsnorm": "RMSNorm", "layernorm": "LayerNorm (weight and bias)"},
    "mlp": {
        "swiglu": "SwiGLU MLP (gate, up, down)",
        "standard_gelu": "two-matrix MLP with GELU",
        "standard_relu": "two-matrix MLP with ReLU",
    },
    "video_dataset": {"webvid": "WebVid-style on-disk video corpus"},
    "sampling_policy": {"uniform": "uniform frame sampling at video.fps, first and last kept"},
    "dyn_ckpt_strategy": {"power2": "save at start and at start + 2^k while <= stop"},
    "modality_strategy": {
        "joint_decoder": "image tokens prepended to the text",
        "cross_attention": "image K/V fed to cross-attention blocks",
        "mot": "per-modality transformer weights, one global attention",
        "moma": "shared attention, per-modality expert groups",
    },
}

for _category, _names in _BUILTIN_COMPONENTS.items():
    for _name, _doc in _names.items():
        registry.register_component(_category, _name, _doc)
