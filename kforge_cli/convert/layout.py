"""The pre-flatten VLM layout: where each of its fields lives now.

Before KempnerForge commit 18ba581 ("Flatten [model.vlm] into top-level
[vision_encoder]/[adapter]/[vlm]") the whole VLM stack was one table nested in
the model section, ``ModelConfig.vlm``.  The encoder and adapter knobs sat
beside the arch knobs under prefixed names (``vision_encoder_path``,
``adapter_hidden_dim``, ...).  The current loader has no ``model.vlm`` field,
so such a file is rejected as an unknown key.
"""

from __future__ import annotations

LEGACY_TABLE = ("model", "vlm")

# Every field the legacy VLMConfig family accepted (base class plus the
# cross_attention and mot subclasses), mapped to where it lives now.  Only the
# encoder and adapter fields changed section or name; the arch-level fields
# kept their names under [vlm].
LEGACY_FIELD_MAP: dict[str, tuple[str, str]] = {
    "arch": ("vlm", "arch"),
    "vision_encoder": ("vision_encoder", "type"),
    "vision_encoder_path": ("vision_encoder", "path"),
    "feature_dim": ("vision_encoder", "feature_dim"),
    "num_tokens": ("vision_encoder", "num_tokens"),
    "adapter_hidden_dim": ("adapter", "hidden_dim"),
    "adapter_activation": ("adapter", "activation"),
    "max_text_len": ("vlm", "max_text_len"),
    "freeze": ("vlm", "freeze"),
    "freeze_schedule": ("vlm", "freeze_schedule"),
    "module_patterns": ("vlm", "module_patterns"),
    "cross_attention_every_n_layers": ("vlm", "cross_attention_every_n_layers"),
    "cross_attention_n_heads": ("vlm", "cross_attention_n_heads"),
    "cross_attention_n_kv_heads": ("vlm", "cross_attention_n_kv_heads"),
    "mot_modalities": ("vlm", "mot_modalities"),
    "mot_image_n_heads": ("vlm", "mot_image_n_heads"),
    "mot_image_n_kv_heads": ("vlm", "mot_image_n_kv_heads"),
    "mot_warm_start_from_text": ("vlm", "mot_warm_start_from_text"),
    "mot_warm_start_path": ("vlm", "mot_warm_start_path"),
}

# Order of the sections the conversion writes, as KempnerForge's own
# migration laid them out.
TARGET_SECTIONS = ("vision_encoder", "adapter", "vlm")


def legacy_target(name: str) -> tuple[str, str]:
    """Where a key of the legacy table goes; names the map does not know (a
    typo, or a field added after the flatten, such as ``moma_*``) keep their
    name under ``[vlm]`` so the loader reports them there."""
    return LEGACY_FIELD_MAP.get(name, ("vlm", name))
