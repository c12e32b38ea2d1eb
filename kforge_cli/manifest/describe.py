"""``describe_model``: the trainer's module tree for a job, as a torch-free description.

Steps run in the reference's order (vision encoder, adapter, adapter token
count, transformer, sequence budget) so the first failing condition is the
one the trainer would report. ``build_manifest`` lists the description;
``kforge_cli.model`` turns the same description into meta-device modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

from kforge_cli.manifest.bounds import check_tensor_count
from kforge_cli.manifest.errors import (
    ModelBuildError,
    ModelNotDescribed,
    safe_repr,
    show,
)
from kforge_cli.manifest.knobs import (
    TEXT_MODEL_TYPES,
    TextSpec,
    VisionSpec,
    VLMSpec,
    as_int,
    cross_attention_after_layers,
    read_adapter_spec,
    read_text_spec,
    read_vision_spec,
    read_vlm_spec,
)
from kforge_cli.manifest.modules import (
    CHECKPOINTED_KIND,
    adapter,
    adapter_output_tokens,
    check_rope_head_dim,
    random_encoder,
    transformer,
)
from kforge_cli.manifest.result import (
    LIMITS_FEATURE_DIM,
    LIMITS_NUM_TOKENS,
    LIMITS_PARAMETERS,
    Manifest,
    UnknownComponent,
)
from kforge_cli.manifest.tree import Node, count_tensors, flatten, module_paths
from kforge_cli.records import record


@record
class ResolvedEncoder:
    """A HuggingFace vision tower the torch builder loaded, and what it probed from its config."""

    module: Any  # the tower, a torch module this package never touches
    feature_dim: int
    num_tokens: int


# Given the encoder's spec (with a non-empty path): the loaded tower, or why it is unknown.
EncoderResolver = Callable[[VisionSpec], "ResolvedEncoder | str"]


@record
class ModelDescription:
    root: Node
    unknown: list[UnknownComponent] = field(default_factory=list)
    num_image_tokens: int | None = 0
    encoder_num_tokens: int | None = None
    encoder_feature_dim: int | None = None
    frames_per_clip: int = 1
    cross_attention_after_layers: list[int] = field(default_factory=list)
    checkpoint_wrapped: list[str] = field(default_factory=list)

    def manifest(self) -> Manifest:
        parameters, buffers = flatten(self.root)
        return Manifest(parameters=parameters, unknown=list(self.unknown),
                        num_image_tokens=self.num_image_tokens, buffers=buffers,
                        encoder_num_tokens=self.encoder_num_tokens,
                        encoder_feature_dim=self.encoder_feature_dim,
                        frames_per_clip=self.frames_per_clip,
                        cross_attention_after_layers=list(self.cross_attention_after_layers),
                        checkpoint_wrapped=list(self.checkpoint_wrapped))


def build_manifest(job: Any) -> Manifest:
    """The parameter manifest of ``job``'s model, without torch.

    Raises ``ModelBuildError`` wherever the trainer's own model build would
    fail, and ``ModelTooLarge`` for models past kforge's bounds. HuggingFace
    encoders are unknown components here.
    """
    return describe_model(job).manifest()


def describe_model(job: Any, *, resolve_encoder: EncoderResolver | None = None) -> ModelDescription:
    """``resolve_encoder`` loads HuggingFace encoders (the torch builder passes one)."""
    text = read_text_spec(getattr(job, "model", None), float8=_swaps_to_float8(job))
    vlm_section = getattr(job, "vlm", None)
    if vlm_section is None:
        description, vlm = _describe_text_only(job, text), None
    else:
        vlm = read_vlm_spec(vlm_section)
        description = _describe_vlm(job, text, vlm, resolve_encoder or _unresolved_hf_encoder)
    # Checked last: a real build failure says more than "too large to list".
    check_tensor_count(count_tensors(description.root), _size_factors(text, vlm))
    wrapped = CHECKPOINTED_KIND.get(_get_mode(job))
    if wrapped is not None:
        description.checkpoint_wrapped = module_paths(description.root, wrapped)
    return description


def _get_mode(job: Any) -> Any:
    mode = getattr(getattr(job, "train", None), "activation_checkpointing", "none")
    return getattr(mode, "value", mode)


def _swaps_to_float8(job: Any) -> bool:
    """mixed_precision = "fp8" on the whole model; pipeline stages (pp > 1) never hold a tied head,
    JobConfig.validate refuses tie_embeddings with pipeline parallelism."""
    train, distributed = getattr(job, "train", None), getattr(job, "distributed", None)
    pp = getattr(distributed, "pp", 1)
    return getattr(train, "mixed_precision", None) == "fp8" and not (isinstance(pp, int) and pp > 1)


def _size_factors(text: TextSpec, vlm: VLMSpec | None) -> dict[str, int]:
    """The knobs that multiply the number of parameter tensors, with their values."""
    factors = {"model.n_layers": text.n_layers}
    if vlm is not None and vlm.arch == "moma":
        factors["vlm.moma_experts_per_modality"] = max(vlm.moma_experts_per_modality.values())
        factors["vlm.moma_modalities"] = len(vlm.moma_modalities)
    elif text.moe_layer_count:
        factors["model.num_experts"] = text.num_experts
    if vlm is not None and vlm.arch == "mot":
        factors["vlm.mot_modalities"] = len(vlm.mot_modalities)
    return factors


def _pipeline_stages(job: Any) -> int:
    distributed = getattr(job, "distributed", None)
    if distributed is None:
        return 1
    return as_int(getattr(distributed, "pp", 1) or 1, "distributed.pp")


def _describe_text_only(job: Any, text: TextSpec) -> ModelDescription:
    stages = _pipeline_stages(job)
    if stages > 1:
        # Pipeline stages are built directly (no model_type lookup); their
        # parameters, taken together, carry the full model's names.
        if stages > text.n_layers:
            raise ModelBuildError(
                f"distributed.pp ({show(stages)}) exceeds model.n_layers ({show(text.n_layers)}): "
                "some pipeline stage would get no layer", "distributed.pp",
                f"use at most {show(text.n_layers)} pipeline stages")
    elif text.model_type not in TEXT_MODEL_TYPES:
        from kforge_cli.config.registry import registry

        if ("model", text.model_type) in registry:
            raise ModelNotDescribed(f"model.model_type = {safe_repr(text.model_type)} comes from a plugin, so "
                                    "kforge cannot list its parameters", "model.model_type",
                                    "the parameter-level checks need the built-in transformer")
        raise ModelBuildError(
            f"model.model_type {safe_repr(text.model_type)} is not a registered text model",
            "model.model_type", "use model_type = \"transformer\"")
    root = transformer(text)
    check_rope_head_dim(text)
    return ModelDescription(root, num_image_tokens=0)


@record
class _Encoder:
    node: Node
    feature_dim: int | None  # None when unknown
    num_tokens: int | None
    unknown_reason: str | None = None


def _unresolved_hf_encoder(spec: VisionSpec) -> str:
    return (f"the {spec.type} encoder's parameters come from its HuggingFace config "
            f"({spec.path!r}), which kforge reads only with torch and transformers installed")


def _describe_encoder(spec: VisionSpec, resolve: EncoderResolver) -> _Encoder:
    if spec.type == "random":
        return _Encoder(*random_encoder(spec.feature_dim, spec.num_tokens))
    if not spec.path:
        # The reference fails here whether or not the cluster has transformers
        # (ImportError without it, ValueError on the empty path with it).
        raise ModelBuildError(
            f"vision_encoder.type = {spec.type!r} loads a HuggingFace model, but "
            "vision_encoder.path is empty", "vision_encoder.path",
            "set vision_encoder.path to a HF hub id or a local model directory")
    resolved = resolve(spec)
    if isinstance(resolved, str):
        return _Encoder(Node("UnresolvedVisionEncoder"), spec.feature_dim or None,
                        spec.num_tokens or None, unknown_reason=resolved)
    tower = Node("HFVisionTower", external=resolved.module)
    # Positive config values override the probe, exactly like the reference.
    return _Encoder(Node("HFVisionEncoder", children={"vision_tower": tower}),
                    spec.feature_dim or resolved.feature_dim, spec.num_tokens or resolved.num_tokens)


def _describe_vlm(job: Any, text: TextSpec, vlm: VLMSpec,
                  resolve_encoder: EncoderResolver) -> ModelDescription:
    vision = read_vision_spec(getattr(job, "vision_encoder", None))
    adapter_spec = read_adapter_spec(getattr(job, "adapter", None))
    video = getattr(job, "video", None)
    frames = 1 if video is None else as_int(getattr(video, "max_frames", 16), "video.max_frames")
    if frames < 1:
        raise ModelBuildError(f"video.max_frames must be >= 1 (got {show(frames)})", "video.max_frames",
                              "sample at least one frame per clip")

    unknown: list[UnknownComponent] = []
    encoder = _describe_encoder(vision, resolve_encoder)
    if encoder.unknown_reason is not None:
        limits: tuple[str, ...] = (LIMITS_PARAMETERS,)
        limits += (LIMITS_FEATURE_DIM,) if encoder.feature_dim is None else ()
        limits += (LIMITS_NUM_TOKENS,) if encoder.num_tokens is None else ()
        unknown.append(UnknownComponent("vision_encoder", encoder.unknown_reason, limits))

    if encoder.feature_dim is None:
        adapter_node = Node("UnresolvedAdapter")
        unknown.append(UnknownComponent(
            "adapter", "its input width is the vision encoder's hidden size, which is unknown; "
                       "set vision_encoder.feature_dim to list the adapter's parameters"))
    else:
        adapter_node = adapter(adapter_spec, encoder.feature_dim, text.dim)

    visual_tokens: int | None = None
    if encoder.num_tokens is not None:
        visual_tokens = frames * adapter_output_tokens(adapter_spec, encoder.num_tokens)

    backbone = transformer(text, vlm)
    check_rope_head_dim(text)

    # Cross-attention feeds images as side-channel K/V; every other arch
    # prepends them to the text sequence.
    residual_image_tokens = visual_tokens if vlm.places_images_in_residual else 0
    if residual_image_tokens is not None:
        _check_sequence_budget(text, vlm, residual_image_tokens, frames)

    root = Node("VLMWrapper", children={"vision_encoder": encoder.node, "adapter": adapter_node,
                                        "transformer": backbone})
    after = (cross_attention_after_layers(text.n_layers, vlm.cross_attention_every_n_layers)
             if vlm.arch == "cross_attention" else [])
    return ModelDescription(root, unknown, num_image_tokens=residual_image_tokens,
                            encoder_num_tokens=encoder.num_tokens,
                            encoder_feature_dim=encoder.feature_dim, frames_per_clip=frames,
                            cross_attention_after_layers=after)


def _check_sequence_budget(text: TextSpec, vlm: VLMSpec, image_tokens: int, frames: int) -> None:
    required = image_tokens + vlm.max_text_len
    if text.max_seq_len >= required:
        return
    if image_tokens:
        detail = (f"{show(image_tokens)} visual tokens ({show(frames)} frame(s) after the adapter) + "
                  f"vlm.max_text_len {show(vlm.max_text_len)} = {show(required)}")
        hint = (f"raise model.max_seq_len to at least {show(required)}, or shrink vlm.max_text_len, "
                "the encoder's token count, video.max_frames, or pool with the adapter")
    else:
        detail = f"vlm.max_text_len = {show(vlm.max_text_len)}"
        hint = f"raise model.max_seq_len to at least {show(required)} or lower vlm.max_text_len"
    raise ModelBuildError(
        f"model.max_seq_len ({show(text.max_seq_len)}) is too small for the VLM residual stream: "
        f"{detail}", "model.max_seq_len", hint)
