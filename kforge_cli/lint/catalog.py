"""Every rule code kforge reports: its meaning, default severity and an example.

Codes keep their meaning forever (SARIF rule ids and ignore lists depend on it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str  # the usual severity; a few codes can be raised at another one
    summary: str
    example: str

    @property
    def help_text(self) -> str:
        return f"{self.summary} Example: {self.example}"


RULES: tuple[Rule, ...] = (
    Rule("KF001", "unreadable-file", "error",
         "The file cannot be read, is not UTF-8, or is not valid TOML.",
         'arch = "joint_decoder   (unterminated string)'),
    Rule("KF101", "unknown-key", "error",
         "A key or section the reference does not know; its loader rejects the whole file.",
         "[model] dimm = 256  ->  did you mean model.dim?"),
    Rule("KF102", "wrong-type", "error",
         "A value of a type the reference cannot coerce (or keeps as is and fails on later).",
         'model.dim = "abc"'),
    Rule("KF103", "invalid-value", "error",
         "A value outside its allowed range, enum, divisibility rule or registry.",
         "model.dim = 0; vlm.arch = \"perceiver\"; optimizer.name = \"adamx\""),
    Rule("KF104", "missing-required", "error",
         "A required field or section is missing.",
         "[vlm] without [vision_encoder]"),
    Rule("KF105", "legacy-layout", "error",
         "The legacy [model.vlm] layout; `kforge convert` migrates it.",
         "[model.vlm] vision_encoder = \"random\""),
    Rule("KF200", "world-size", "error",
         "The parallel degrees (dp_replicate x dp_shard x tp x pp x cp x ep) do not match --world-size.",
         "dp_shard = 4, tp = 2 on 6 GPUs"),
    Rule("KF201", "sequence-budget", "error",
         "The residual stream (image tokens + vlm.max_text_len) does not fit model.max_seq_len or "
         "train.seq_len.",
         "max_seq_len = 576 with 64 image tokens and max_text_len = 600"),
    Rule("KF202", "seq-len-exceeds-model", "error",
         "train.seq_len is larger than model.max_seq_len.", "train.seq_len = 4096, model.max_seq_len = 2048"),
    Rule("KF203", "pipeline-unsupported", "error",
         "Pipeline parallelism combined with VLM, MoE or tied embeddings.", "[vlm] with distributed.pp = 2"),
    Rule("KF204", "tp-divisibility", "error",
         "Attention heads are not divisible by the tensor-parallel degree.", "n_heads = 6, tp = 4"),
    Rule("KF205", "fp8-with-tp", "error", "FP8 mixed precision with tensor parallelism.",
         'mixed_precision = "fp8", tp = 2'),
    Rule("KF206", "expert-parallel", "error",
         "Expert parallelism without an MoE model, or not dividing num_experts.", "ep = 4, num_experts = 6"),
    Rule("KF207", "moma-constraint", "error",
         "MoMa combined with model.num_experts or expert parallelism.", 'arch = "moma", num_experts = 8'),
    Rule("KF208", "mot-head-mismatch", "error",
         "MoT per-modality head counts differ from the text backbone's (v1 needs them equal).",
         "mot_image_n_heads = 8 with model.n_heads = 16"),
    Rule("KF209", "adapter-build", "error",
         "The adapter cannot be built for this encoder (pooling grid, heads not dividing the feature dim).",
         'adapter.type = "attentional_pool", pool_heads = 7, feature_dim = 384'),
    Rule("KF210", "odd-head-dim", "error",
         "model.dim / model.n_heads is odd; rotary embeddings need an even head dimension.",
         "dim = 96, n_heads = 32 (head_dim 3)"),
    Rule("KF211", "model-build-fails", "error",
         "Building the model on the meta device fails for a reason the other rules do not name.",
         "a negative FFN width from ffn_dim_multiplier"),
    Rule("KF301", "freeze-unknown-alias", "error",
         "A freeze spec's module is not an alias of vlm.module_patterns; the training loop's "
         "effective_freeze raises at the first step boundary that reaches it.",
         'freeze = [{module = "transformer.layers.0.*"}]'),
    Rule("KF302", "stage-at-or-before-zero", "warning",
         "A freeze stage with start_step <= 0: a fresh run never fires it, a resumed run applies it.",
         "freeze_schedule = [{start_step = 0, specs = [...]}]"),
    Rule("KF303", "resume-diverges", "warning",
         "Resuming at some step yields a different trainable set than the uninterrupted run.",
         "overlapping aliases transformer and cross_attention in successive stages"),
    Rule("KF304", "unfrozen-never-updated", "warning",
         "A parameter frozen at build time is unfrozen by a later stage: the optimizer was built without it, "
         "so it gets gradients but is never updated.",
         "freeze transformer at build, unfreeze cross_attention at step 10"),
    Rule("KF305", "freeze-matches-nothing", "warning",
         "A freeze spec or alias matches no parameter.", 'module = "vision_encoder" with the random encoder'),
    Rule("KF306", "stage-never-reached", "warning",
         "A freeze stage starts after train.max_steps.", "start_step = 500 with max_steps = 100"),
    Rule("KF307", "nothing-trainable", "error",
         "No parameter is trainable at some step: the first backward fails.",
         'freeze = [{module = "transformer"}, {module = "adapter"}]'),
    Rule("KF308", "stage-changes-nothing", "warning",
         "A freeze stage leaves the frozen set unchanged.", "freezing an already frozen alias"),
    Rule("KF400", "note", "info", "Information worth knowing; nothing is wrong.",
         "the HF encoder's token budget is only checked when the model is built"),
    Rule("KF401", "lossy-coercion", "warning",
         "A value accepted only through the reference's lossy coercion.", 'dim = 256.0; compile_model = "no"'),
    Rule("KF402", "no-cross-attention-blocks", "warning",
         "cross_attention_every_n_layers > model.n_layers: zero cross-attention blocks, images never reach "
         "the model.", "cross_attention_every_n_layers = 8 with n_layers = 4"),
    Rule("KF403", "section-without-effect", "warning",
         "A section (or a whole file) that has no effect.", "[vision_encoder] without [vlm]"),
    Rule("KF404", "reference-warning", "warning",
         "A warning the reference itself logs (HF encoder dims overridden, compile with MoE/MoMa, "
         "activation_checkpointing = full on MoMa, eval on VLM).", 'type = "siglip2", num_tokens = 196'),
    Rule("KF405", "data-source-missing", "warning",
         "The data section lacks what the trainer needs at data setup (it raises there), or no data source "
         "is configured at all.", "a VLM job without data.hf_dataset_name"),
    Rule("KF406", "module-patterns-trap", "warning",
         "vlm.module_patterns replaces the default aliases, or an alias value is a string rather than a "
         "list of patterns.", '[vlm.module_patterns] layer0 = ["transformer.layers.0.*"]'),
    Rule("KF407", "schedule-mismatch", "warning",
         "The LR schedule does not fit the run length (warmup longer than training).",
         "warmup_steps = 2000 with max_steps = 50"),
    Rule("KF409", "fails-at-first-step", "warning",
         "The model builds, but its first forward pass raises or part of it can never train.",
         'mot_modalities = ["image", "text", "audio"]'),
    Rule("KF501", "checkpoint-missing-keys", "error",
         "Parameters the model has and the checkpoint lacks (they would start from random init).",
         "a cross-attention config resumed from a joint-decoder checkpoint"),
    Rule("KF502", "checkpoint-unexpected-keys", "error",
         "Checkpoint entries the model does not have.", "a checkpoint of a 32-layer model for 24 layers"),
    Rule("KF503", "checkpoint-shape-mismatch", "error",
         "Checkpoint tensors whose shape differs from the model's.", "k_proj [1024, 4096] vs [4096, 4096]"),
    Rule("KF504", "checkpoint-freeze-mismatch", "error",
         "The checkpoint's saved freeze metadata differs from the config's at the saved step.",
         "saved vision_encoder frozen, config unfreezes it"),
    Rule("KF505", "checkpoint-unreadable", "error",
         "The checkpoint is missing, unreadable, truncated or unsafe to load.", "a pickle that runs code"),
)

RULES_BY_CODE: dict[str, Rule] = {rule.code: rule for rule in RULES}
