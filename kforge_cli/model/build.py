"""``build_meta_model``: the trainer's module tree for a job, on the meta device.

Steps run in the reference's order (vision encoder, adapter, adapter token
count, transformer, sequence budget) so the first failing condition is the
one the trainer would report.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

from torch import nn

from kforge_cli.model.backbone import Transformer, check_rope_head_dim
from kforge_cli.model.knobs import (
    TEXT_MODEL_TYPES,
    TextSpec,
    VLMSpec,
    as_int,
    cross_attention_after_layers,
    read_adapter_spec,
    read_text_spec,
    read_vision_spec,
    read_vlm_spec,
)
from kforge_cli.model.manifest import MetaModel, ModelBuildError, ParamInfo, UnknownComponent
from kforge_cli.model.vision import (
    UnresolvedAdapter,
    adapter_output_tokens,
    build_adapter,
    build_encoder,
)


class VLMWrapper(nn.Module):
    def __init__(self, vision_encoder: nn.Module, adapter: nn.Module,
                 transformer: nn.Module) -> None:
        super().__init__()
        self.vision_encoder = vision_encoder
        self.adapter = adapter
        self.transformer = transformer


def build_meta_model(job: Any) -> MetaModel:
    text = read_text_spec(getattr(job, "model", None))
    vlm = getattr(job, "vlm", None)
    with _cyclic_gc_paused():
        if vlm is None:
            return _build_text_only(job, text)
        return _build_vlm(job, text, read_vlm_spec(vlm))


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    # A big MoE creates tens of thousands of modules and no garbage; the
    # collector's repeated full scans would otherwise dominate the build time.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _pipeline_stages(job: Any) -> int:
    distributed = getattr(job, "distributed", None)
    if distributed is None:
        return 1
    return as_int(getattr(distributed, "pp", 1) or 1, "distributed.pp")


def _build_text_only(job: Any, text: TextSpec) -> MetaModel:
    stages = _pipeline_stages(job)
    if stages > 1:
        # Pipeline stages are built directly (no model_type lookup); their
        # parameters, taken together, carry the full model's names.
        if stages > text.n_layers:
            raise ModelBuildError(
                f"distributed.pp ({stages}) exceeds model.n_layers ({text.n_layers}): some "
                "pipeline stage would get no layer", "distributed.pp",
                f"use at most {text.n_layers} pipeline stages")
    elif text.model_type not in TEXT_MODEL_TYPES:
        raise ModelBuildError(
            f"model.model_type {text.model_type!r} is not a registered text model",
            "model.model_type", "use model_type = \"transformer\"")
    transformer = Transformer(text)
    check_rope_head_dim(text)
    return _manifest(transformer, num_image_tokens=0)


def _build_vlm(job: Any, text: TextSpec, vlm: VLMSpec) -> MetaModel:
    vision = read_vision_spec(getattr(job, "vision_encoder", None))
    adapter_spec = read_adapter_spec(getattr(job, "adapter", None))
    video = getattr(job, "video", None)
    frames = 1 if video is None else as_int(getattr(video, "max_frames", 16), "video.max_frames")
    if frames < 1:
        raise ModelBuildError(f"video.max_frames must be >= 1 (got {frames})", "video.max_frames",
                              "sample at least one frame per clip")

    unknown: list[UnknownComponent] = []
    encoder = build_encoder(vision)
    if encoder.unknown_reason is not None:
        unknown.append(UnknownComponent("vision_encoder", encoder.unknown_reason))

    if encoder.feature_dim is None:
        adapter: nn.Module = UnresolvedAdapter()
        unknown.append(UnknownComponent(
            "adapter", "its input width is the vision encoder's hidden size, which is unknown; "
                       "set vision_encoder.feature_dim to list the adapter's parameters"))
    else:
        adapter = build_adapter(adapter_spec, encoder.feature_dim, text.dim)

    visual_tokens: int | None = None
    if encoder.num_tokens is not None:
        visual_tokens = frames * adapter_output_tokens(adapter_spec, encoder.num_tokens)

    transformer = Transformer(text, vlm)
    check_rope_head_dim(text)

    if not vlm.places_images_in_residual:
        residual_image_tokens: int | None = 0
    else:
        residual_image_tokens = visual_tokens
    if residual_image_tokens is not None:
        _check_sequence_budget(text, vlm, residual_image_tokens, frames)

    wrapper = VLMWrapper(encoder.module, adapter, transformer)
    meta = _manifest(wrapper, num_image_tokens=residual_image_tokens, unknown=unknown)
    meta.encoder_num_tokens = encoder.num_tokens
    meta.encoder_feature_dim = encoder.feature_dim
    meta.frames_per_clip = frames
    if vlm.arch == "cross_attention":
        meta.cross_attention_after_layers = cross_attention_after_layers(
            text.n_layers, vlm.cross_attention_every_n_layers)
    return meta


def _check_sequence_budget(text: TextSpec, vlm: VLMSpec, image_tokens: int, frames: int) -> None:
    required = image_tokens + vlm.max_text_len
    if text.max_seq_len >= required:
        return
    if image_tokens:
        detail = (f"{image_tokens} visual tokens ({frames} frame(s) after the adapter) + "
                  f"vlm.max_text_len {vlm.max_text_len} = {required}")
        hint = (f"raise model.max_seq_len to at least {required}, or shrink vlm.max_text_len, "
                "the encoder's token count, video.max_frames, or pool with the adapter")
    else:
        detail = f"vlm.max_text_len = {vlm.max_text_len}"
        hint = f"raise model.max_seq_len to at least {required} or lower vlm.max_text_len"
    raise ModelBuildError(
        f"model.max_seq_len ({text.max_seq_len}) is too small for the VLM residual stream: "
        f"{detail}", "model.max_seq_len", hint)


def _manifest(module: nn.Module, *, num_image_tokens: int | None,
              unknown: list[UnknownComponent] | None = None) -> MetaModel:
    parameters = [
        ParamInfo(name, tuple(p.shape), p.numel(), not p.requires_grad)
        for name, p in module.named_parameters()
    ]
    # Persistent buffers are the state_dict entries that are not parameters
    # (a tied weight shows up there under both of its names).
    parameter_names = {name for name, _ in module.named_parameters(remove_duplicate=False)}
    buffers = [
        ParamInfo(name, tuple(tensor.shape), tensor.numel(), False)
        for name, tensor in module.state_dict(keep_vars=True).items()
        if name not in parameter_names
    ]
    return MetaModel(module=module, parameters=parameters, unknown=unknown or [],
                     num_image_tokens=num_image_tokens, buffers=buffers)

