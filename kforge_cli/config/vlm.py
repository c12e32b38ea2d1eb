"""The VLM section: a discriminated union on ``arch``, plus the freeze policy.

Mirrors ``kempnerforge.config.vlm``: ``VLMConfig`` and one registered subclass
per architecture (``joint_decoder``, ``cross_attention``, ``mot``, ``moma``),
``FreezeSpec`` / ``FreezeStage``, ``DEFAULT_MODULE_PATTERNS`` and the per-arch
module aliases.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from kforge_cli.config.data import strictly_increasing
from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.registry import RegistryError, registry
from kforge_cli.config.section import Section
from kforge_cli.findings import shown
from kforge_cli.records import record
from kforge_cli.rules.loading import INVALID_VALUE, MISSING_REQUIRED

# Every alias matches the bare attribute and everything below it, so freezing
# by alias cannot silently miss a parameter.
DEFAULT_MODULE_PATTERNS: dict[str, list[str]] = {
    "transformer": ["transformer", "transformer.*"],
    "vision_encoder": ["vision_encoder", "vision_encoder.*"],
    "adapter": ["adapter", "adapter.*"],
}

# Aliases each arch adds on top of the defaults.
ARCH_MODULE_ALIASES: dict[str, dict[str, list[str]]] = {
    "cross_attention": {
        "cross_attention": ["transformer.cross_attention_layers", "transformer.cross_attention_layers.*"],
    },
    "mot": {"mot": ["transformer.layers", "transformer.layers.*"]},
    "moma": {"moma": ["transformer.layers", "transformer.layers.*"]},
}

# Arch names announced but not implemented: selecting one raises
# NotImplementedError instead of "unknown arch". Empty at the reference commit;
# plugins and tests may add to it.
RESERVED_ARCHS: set[str] = set()


def cross_attention_after_layers(n_layers: int, every: int) -> list[int]:
    """Text-layer indices a cross-attention block runs after: every ``every``-th layer."""
    if every <= 0:
        return []
    return [(block + 1) * every - 1 for block in range(n_layers // every)]


def module_patterns_for(arch: str) -> dict[str, list[str]]:
    patterns = {alias: list(p) for alias, p in DEFAULT_MODULE_PATTERNS.items()}
    for alias, p in ARCH_MODULE_ALIASES.get(arch, {}).items():
        patterns[alias] = list(p)
    return patterns


@record(frozen=True)
class FreezeSpec:
    """Freeze (or unfreeze) the parameters an alias or fnmatch pattern selects."""

    module: str = setting(doc="alias of vlm.module_patterns, or a raw fnmatch pattern over parameter names")
    frozen: bool = setting(True, "true freezes the selected parameters, false makes them trainable")


@record(frozen=True)
class FreezeStage:
    """Freeze specs applied from ``start_step`` on (a staged training recipe)."""

    start_step: int = setting(doc="optimizer step at which the stage's specs are applied", unit="steps")
    specs: tuple[FreezeSpec, ...] = setting(doc="freeze specs of the stage, each {module, frozen}")


def unknown_arch_message(arch: Any) -> str:
    message = f"Unknown vlm.arch: {shown(arch)}. Registered: {sorted(registry.list_vlm_configs())}."
    if RESERVED_ARCHS:
        message += f" Reserved (not yet implemented): {sorted(RESERVED_ARCHS)}."
    return message


def reserved_arch_message(arch: Any) -> str:
    return f"vlm.arch={shown(arch)} is reserved; not yet implemented. Reserved: {sorted(RESERVED_ARCHS)}."


def resolve_arch_class(arch: Any) -> type[VLMConfig]:
    """The registered subclass for ``arch``; same errors as the reference's loader."""
    if isinstance(arch, str) and arch in RESERVED_ARCHS:
        raise NotImplementedError(reserved_arch_message(arch))
    try:
        return registry.get_vlm_config(arch)
    except RegistryError:
        raise ValueError(unknown_arch_message(arch)) from None


def built_arch(vlm: Any) -> str | None:
    """The arch whose model the trainer builds for ``vlm``: its config class's own.

    The transformer dispatches on the config's class, not on its ``arch``
    string; a ``--set vlm.arch=...`` override rewrites only the string (the
    loader keeps the class built from the file), so the two can differ. The
    string still picks the ModalityStrategy used in the forward pass.
    """
    if not isinstance(vlm, VLMConfig):
        arch = getattr(vlm, "arch", None)
        return arch if isinstance(arch, str) else None
    for f in dataclasses.fields(type(vlm)):
        if f.name == "arch" and isinstance(f.default, str):
            return f.default
    return None


def _default_freeze() -> list[FreezeSpec]:
    return [FreezeSpec("vision_encoder", True)]


@record
class VLMConfig(Section):
    """Arch-level knobs of the vision-language model."""

    SECTION: ClassVar[str] = "vlm"
    ARCH_FIELDS: ClassVar[tuple[str, ...]] = ()

    arch: str = setting("joint_decoder", "VLM architecture; selects the config subclass",
                        registry="vlm_config")
    max_text_len: int = setting(512, "fixed text padding length per sample (text tokens in the residual stream)",
                                unit="tokens", gt=0, fix="set vlm.max_text_len to the padded text length, e.g. 512")
    freeze: list[FreezeSpec] = setting(
        factory=_default_freeze,
        doc="freeze specs applied once at model build (alias or fnmatch pattern, frozen flag)")
    freeze_schedule: list[FreezeStage] = setting(
        factory=list, doc="staged freeze transitions: specs applied from start_step on")
    module_patterns: dict[str, list[str]] = setting(
        factory=lambda: module_patterns_for("joint_decoder"),
        doc="freeze alias -> fnmatch patterns over parameter names (replaces the defaults when set)")

    @classmethod
    def for_arch(cls, arch: str, **fields: Any) -> VLMConfig:
        """Construct the registered subclass for ``arch``.

        Raises ValueError for an unregistered arch and NotImplementedError for a
        reserved one, exactly like the loader.
        """
        return resolve_arch_class(arch)(**fields)

    def residual_stream_image_tokens(self, num_tokens: int) -> int:
        """Image tokens this arch places in the residual stream (0 = unknown yet)."""
        return num_tokens

    def rules(self, c: Checker) -> None:
        if isinstance(self.arch, str) and self.arch in RESERVED_ARCHS:
            c.report(INVALID_VALUE, "arch", reserved_arch_message(self.arch),
                     f"pick one of {sorted(registry.list_vlm_configs())}")
        elif ("vlm_config", self.arch) not in registry:
            c.report(INVALID_VALUE, "arch", unknown_arch_message(self.arch),
                     f"pick one of {sorted(registry.list_vlm_configs())}")
        steps = [s.start_step for s in self.freeze_schedule if isinstance(s, FreezeStage)]
        if steps and len(steps) == len(self.freeze_schedule) and not strictly_increasing(steps):
            c.report(INVALID_VALUE, "freeze_schedule",
                     f"vlm.freeze_schedule start_steps must be strictly monotonic (got {steps})",
                     f"order the stages by start_step with no repeats: {sorted(set(steps))}")


@registry.register_vlm_config("joint_decoder")
@record
class JointDecoderConfig(VLMConfig):
    """Joint decoder: image tokens are prepended to the text sequence."""

    arch: str = setting("joint_decoder", "VLM architecture; selects the config subclass",
                        registry="vlm_config")


@registry.register_vlm_config("cross_attention")
@record
class CrossAttentionConfig(VLMConfig):
    """Cross-attention: image K/V enter separate blocks inserted every N text layers."""

    ARCH_FIELDS: ClassVar[tuple[str, ...]] = (
        "cross_attention_every_n_layers", "cross_attention_n_heads", "cross_attention_n_kv_heads")

    arch: str = setting("cross_attention", "VLM architecture; selects the config subclass",
                        registry="vlm_config")
    cross_attention_every_n_layers: int = setting(
        4, "insert one cross-attention block after every N text layers", gt=0,
        fix="use 4 for one cross-attention block per 4 text layers")
    cross_attention_n_heads: int = setting(
        0, "query heads of the cross-attention blocks (0 = model.n_heads)", ge=0,
        fix="set vlm.cross_attention_n_heads = 0 to inherit from the text backbone")
    cross_attention_n_kv_heads: int = setting(
        0, "key/value heads of the cross-attention blocks (0 = the resolved query heads)", ge=0,
        fix="set vlm.cross_attention_n_kv_heads = 0 to inherit from the text backbone")
    module_patterns: dict[str, list[str]] = setting(
        factory=lambda: module_patterns_for("cross_attention"),
        doc="freeze alias -> fnmatch patterns over parameter names (replaces the defaults when set)")

    def residual_stream_image_tokens(self, num_tokens: int) -> int:
        return 0  # the residual stream carries text only

    def resolved_heads(self, model_n_heads: int) -> tuple[int, int]:
        """(n_heads, n_kv_heads) of the cross-attention blocks, zeros resolved."""
        if model_n_heads <= 0:
            raise ValueError(f"model_n_heads must be positive (got {model_n_heads})")
        n_heads = self.cross_attention_n_heads or model_n_heads
        return n_heads, self.cross_attention_n_kv_heads or n_heads


def _check_modalities(c: Checker, name: str, modalities: Any) -> None:
    if not isinstance(modalities, (tuple, list)):
        return
    label = f"vlm.{name}"
    got = shown(tuple(modalities))
    if len(modalities) < 2:
        c.report(INVALID_VALUE, name, f"{label} must have at least 2 entries (got {got})",
                 f'use {label} = ["image", "text"]')
    if "text" not in modalities:
        c.report(INVALID_VALUE, name, f"{label} must include 'text' (got {got})", f'add "text" to {label}')
    if "image" not in modalities:
        c.report(INVALID_VALUE, name, f"{label} must include 'image' (got {got})", f'add "image" to {label}')
    try:
        duplicated = len(set(modalities)) != len(modalities)
    except TypeError:
        duplicated = False
    if duplicated:
        c.report(INVALID_VALUE, name, f"{label} must not contain duplicates (got {got})", "list each modality once")


@registry.register_vlm_config("mot")
@record
class MoTConfig(VLMConfig):
    """Mixture-of-Transformers: per-modality Q/K/V/O and FFN, one global attention."""

    ARCH_FIELDS: ClassVar[tuple[str, ...]] = (
        "mot_modalities", "mot_image_n_heads", "mot_image_n_kv_heads",
        "mot_warm_start_from_text", "mot_warm_start_path")

    arch: str = setting("mot", "VLM architecture; selects the config subclass", registry="vlm_config")
    mot_modalities: tuple[str, ...] = setting(
        ("image", "text"), "modalities with their own transformer weights (must include image and text)")
    mot_image_n_heads: int = setting(
        0, "image-stream query heads (0 = model.n_heads; must equal it in this version)", ge=0,
        fix="set vlm.mot_image_n_heads = 0 to inherit from the text backbone")
    mot_image_n_kv_heads: int = setting(
        0, "image-stream key/value heads (0 = model.n_kv_heads; must equal it in this version)", ge=0,
        fix="set vlm.mot_image_n_kv_heads = 0 to inherit from the text backbone")
    mot_warm_start_from_text: bool = setting(
        False, "copy dense text-block weights into every modality copy at step 0")
    mot_warm_start_path: str = setting(
        "", "torch-saved joint-decoder or text-only state dict used by the warm start")
    module_patterns: dict[str, list[str]] = setting(
        factory=lambda: module_patterns_for("mot"),
        doc="freeze alias -> fnmatch patterns over parameter names (replaces the defaults when set)")

    def residual_stream_image_tokens(self, num_tokens: int) -> int:
        return num_tokens

    def resolved_image_heads(self, model_n_heads: int, model_n_kv_heads: int = 0) -> tuple[int, int]:
        """(n_heads, n_kv_heads) of the image stream, zeros resolved against the text backbone."""
        if model_n_heads <= 0:
            raise ValueError(f"model_n_heads must be positive (got {model_n_heads})")
        n_heads = self.mot_image_n_heads or model_n_heads
        return n_heads, self.mot_image_n_kv_heads or model_n_kv_heads or n_heads

    def rules(self, c: Checker) -> None:
        super().rules(c)
        _check_modalities(c, "mot_modalities", self.mot_modalities)
        if self.mot_warm_start_from_text and not self.mot_warm_start_path:
            c.report(MISSING_REQUIRED, "mot_warm_start_path",
                     "vlm.mot_warm_start_from_text=True requires vlm.mot_warm_start_path to be a "
                     "non-empty filesystem path to a torch-saved JD or text-only state dict",
                     "set vlm.mot_warm_start_path, or vlm.mot_warm_start_from_text = false")


def _default_moma_experts() -> dict[str, int]:
    return {"image": 4, "text": 4}


@registry.register_vlm_config("moma")
@record
class MoMaConfig(VLMConfig):
    """Mixture of modality-aware experts: shared attention, per-modality expert groups."""

    ARCH_FIELDS: ClassVar[tuple[str, ...]] = (
        "moma_modalities", "moma_experts_per_modality", "moma_capacity_factor", "moma_gumbel_noise")

    arch: str = setting("moma", "VLM architecture; selects the config subclass", registry="vlm_config")
    moma_modalities: tuple[str, ...] = setting(
        ("image", "text"), "modalities with their own expert group (must include image and text)")
    moma_experts_per_modality: dict[str, int] = setting(
        factory=_default_moma_experts, doc="experts in each modality's group (a key per modality)")
    moma_capacity_factor: float = setting(
        0.0, "tokens each expert picks, as a fraction of the modality's tokens (0 = 1 / experts)", ge=0,
        fix="use 0 for the paper default (1 / experts per modality)")
    moma_gumbel_noise: bool = setting(True, "add Gumbel-sigmoid noise to expert-choice scores in training")
    module_patterns: dict[str, list[str]] = setting(
        factory=lambda: module_patterns_for("moma"),
        doc="freeze alias -> fnmatch patterns over parameter names (replaces the defaults when set)")

    def residual_stream_image_tokens(self, num_tokens: int) -> int:
        return num_tokens

    def effective_capacity_factor(self, modality: str) -> float:
        """Capacity per expert: the explicit factor, else 1 / experts of that modality."""
        if self.moma_capacity_factor > 0:
            return self.moma_capacity_factor
        return 1.0 / self.moma_experts_per_modality[modality]

    def rules(self, c: Checker) -> None:
        super().rules(c)
        modalities = self.moma_modalities
        _check_modalities(c, "moma_modalities", modalities)
        experts = self.moma_experts_per_modality
        if isinstance(experts, dict) and isinstance(modalities, (tuple, list)):
            try:
                missing = set(modalities) - set(experts)
                extra = set(experts) - set(modalities)
            except TypeError:
                missing = extra = set()
            if missing:
                c.report(MISSING_REQUIRED, "moma_experts_per_modality",
                         f"vlm.moma_experts_per_modality missing entries for {sorted(missing)} "
                         f"(got {shown(experts)}, need keys for all moma_modalities {shown(tuple(modalities))})",
                         "add " + ", ".join(f"{m} = 4" for m in sorted(missing))
                         + " under vlm.moma_experts_per_modality")
            if extra:
                c.report(INVALID_VALUE, "moma_experts_per_modality",
                         f"vlm.moma_experts_per_modality has unknown modality keys {sorted(extra)} "
                         f"(allowed: {sorted(modalities)})", "remove them or add them to vlm.moma_modalities")
            for modality, count in experts.items():
                if is_number(count) and count <= 0:
                    c.report(INVALID_VALUE, f"moma_experts_per_modality.{modality}",
                             f"vlm.moma_experts_per_modality[{modality!r}] must be positive (got {shown(count)}). "
                             "For dense per-modality FFN use arch='mot' instead.",
                             "use at least 1 expert, or arch = \"mot\" for a dense FFN per modality")


def arch_fields() -> dict[str, tuple[str, ...]]:
    """Arch -> the fields only that arch accepts (for did-you-mean on a wrong arch)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in registry.list_vlm_configs():
        out[name] = registry.get_vlm_config(name).ARCH_FIELDS
    return out
