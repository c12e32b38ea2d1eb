"""How large a model kforge lists, and the refusal (ModelTooLarge) past that.

Not limits of the reference: a config past them is almost surely a typo, and
listing it would cost seconds to minutes and gigabytes for nothing. The bounds
sit far above real models: Llama-3 405B has 126 layers, DeepSeek-V3 and
Kimi K2 have 256 and 384 routed experts, and the largest of them, laid out as
KempnerForge lays out unpacked experts (three tensors per expert, 61 layers),
has about 71,000 parameter tensors. The tensor bound leaves about three times
that, and keeps the pure-Python listing at a few tenths of a second.
"""

from __future__ import annotations

from kforge_cli.manifest.errors import ModelTooLarge, show

MAX_LAYERS = 20_000
# Routed experts of one MoE layer, or of one MoMa modality group.
MAX_EXPERTS = 20_000
# Parameter tensors in the whole model: what the manifest lists one by one.
MAX_PARAMETER_TENSORS = 200_000


def check_layers(n_layers: int) -> None:
    if n_layers > MAX_LAYERS:
        raise ModelTooLarge(f"model.n_layers = {show(n_layers)} is beyond what kforge builds "
                            f"({MAX_LAYERS:,} layers)", "model.n_layers",
                            "check model.n_layers for a typo")


def check_experts(count: int, key: str) -> None:
    if count > MAX_EXPERTS:
        raise ModelTooLarge(f"{key} = {show(count)} is beyond what kforge builds "
                            f"({MAX_EXPERTS:,} experts per layer)", key, f"check {key} for a typo")


def check_tensor_count(count: int, factors: dict[str, int]) -> None:
    """``factors``: the knobs that multiply the count, with their values; the largest is blamed."""
    if count <= MAX_PARAMETER_TENSORS:
        return
    key = max(factors, key=lambda k: factors[k])
    listed = ", ".join(f"{k} = {show(v)}" for k, v in factors.items())
    raise ModelTooLarge(f"the model has {count:,} parameter tensors ({listed}), beyond what kforge "
                        f"lists ({MAX_PARAMETER_TENSORS:,})", key, f"check {key} for a typo")
