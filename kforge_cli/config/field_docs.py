"""The rules each config field must satisfy, in words, for `kforge explain --field`.

Pure data. ``FIELD_RULES`` maps ``"section.field"`` (``"section"`` for a whole
section, ``"section.list[].field"`` inside array-of-table entries) to the
sentences a user needs: what the KempnerForge trainer rejects, when it does
(at load, at validation, at model build, at trainer start-up, in the training
loop) and the cross-section rules the field takes part in. Each sentence names
the kforge rule code that reports it.

Stages, as used below:
  at load          building the JobConfig from the TOML and ``--set`` overrides
  at validation    ``JobConfig.validate(world_size)``, before distributed setup
  at model build   constructing the model (the sequence budget is re-checked here)
  at start-up      registry lookups and checkpoint resume in the training script
  in the loop      the training loop (freeze stages, checkpoint metadata)

``ENTRY_DOCS`` gives one-line docs for the fields of the small value types
(freeze specs and stages) that have no field metadata of their own.
"""

from __future__ import annotations

_POSITIVE = "Must be positive; 0 or less is rejected at load (KF103)."

FIELD_RULES: dict[str, tuple[str, ...]] = {
    # -- sections --------------------------------------------------------------------
    "model": (
        "Always present; every field has a default (a 7B-shaped dense model), so set the ones that matter.",
        "Fields are checked together when the section is built at load: positivity first, then "
        "dim % n_heads and n_heads % n_kv_heads (KF103).",
    ),
    "train": ("Always present; the loop's sizes (batch_size, seq_len, max_steps, grad_accum_steps) must be "
              "positive, rejected at load (KF103).",),
    "optimizer": ("optimizer.name is resolved at start-up; the numeric ranges are checked at load (KF103).",),
    "scheduler": ("scheduler.name is an enum in the reference: an unknown name is rejected at load (KF103).",),
    "data": (
        "A text job without dataset_path, hf_dataset_name or datasets trains on random token ids (KF405).",
        "A VLM job needs data.hf_dataset_name and data.tokenizer_path; the trainer raises at data setup "
        "without them (KF405, a warning because they are often passed with --set at launch).",
    ),
    "eval": ("Ignored for VLM jobs: the trainer logs a warning and skips evaluation (KF404).",),
    "distributed": (
        "With a known world size (validate --world-size N): dp_replicate x dp_shard x tp x pp x cp x ep must "
        "equal N, dp_shard = -1 taking whatever is left; rejected at validation (KF201).",
    ),
    "checkpoint": ("checkpoint.interval must be positive, rejected at load (KF103).",),
    "metrics": ("metrics.log_interval must be positive, rejected at load (KF103).",),
    "profiling": ("profiling.end_step must be greater than profiling.start_step, rejected at load (KF103).",),
    "vision_encoder": (
        "Required when [vlm] is present: [vlm] without [vision_encoder] is rejected at load (KF104).",
        "Has no effect without [vlm]: the job trains the text model only (KF403).",
    ),
    "adapter": (
        "Optional: when [vlm] is set and [adapter] is absent, the default mlp_2layer adapter is filled in at "
        "load.",
        "Has no effect without [vlm] (KF403).",
    ),
    "vlm": (
        "Its presence makes the job a VLM run; absent means text-only.",
        "Requires [vision_encoder], rejected at load otherwise (KF104).",
        "vlm.arch selects the config class; each arch accepts its own extra fields and rejects the others' as "
        "unknown keys at load (KF101).",
        "VLM with distributed.pp > 1 is rejected at validation (KF203).",
        "The sequence budget, residual image tokens + vlm.max_text_len, must fit model.max_seq_len (at load "
        "when vision_encoder.num_tokens > 0, else at model build) and train.seq_len (at validation) (KF201).",
    ),
    "video": (
        "Requires [vlm] (and so [vision_encoder]); [video] without [vlm] is rejected at load (KF104).",
        "Multiplies the visual tokens: video.max_frames x tokens per frame after the adapter enter the "
        "sequence budget.",
    ),
    "checkpoint.dyn_ckpt_window": (
        "Optional dense-save window; checkpoints saved inside it are kept regardless of keep_last_n.",
        "When it covers step 0 the trainer saves the initial weights before the first step, which also "
        "evaluates the freeze specs at start-up (see vlm.freeze).",
    ),
    "data.datasets": ("Each entry needs path or hf_name, rejected at load otherwise (KF104).",),
    "data.phases": ("start_step values must be strictly increasing with no repeats, rejected at load (KF103).",),
    # -- [model] ----------------------------------------------------------------------------
    "model.dim": (
        _POSITIVE,
        "Must be divisible by model.n_heads, rejected at load (KF103).",
        "The head dimension dim // n_heads must be even for rotary embeddings; the model build fails "
        "otherwise (KF210).",
        "VLM: the adapter projects vision features to this width, and cross-attention blocks run at it.",
    ),
    "model.n_layers": (
        _POSITIVE,
        "cross_attention arch: n_layers // vlm.cross_attention_every_n_layers cross-attention blocks are "
        "built; a cadence above n_layers builds none and images never reach the model (KF402).",
        "Text-only job: distributed.pp must not exceed it, or a pipeline stage gets no block (model build, "
        "KF203).",
    ),
    "model.n_heads": (
        _POSITIVE,
        "Must divide model.dim and be divisible by model.n_kv_heads, rejected at load (KF103).",
        "dim // n_heads must be even (rotary embeddings), else the model build fails (KF210).",
        "With distributed.tp > 1 it must be divisible by tp, rejected at validation (KF204).",
        "It is what vlm.cross_attention_n_heads = 0 and vlm.mot_image_n_heads = 0 resolve to; MoT needs the "
        "image stream to keep exactly this count (model build, KF208).",
        "Changing n_heads without setting n_kv_heads keeps n_kv_heads = 32 (see model.n_kv_heads).",
    ),
    "model.n_kv_heads": (
        "Unset means plain multi-head attention: it is resolved to model.n_heads when ModelConfig is built.",
        "Must be positive and divide model.n_heads, rejected at load (KF103).",
        "Quirk: the loader applies the file on top of a ModelConfig already built from the defaults, where "
        "n_kv_heads was resolved to the default n_heads = 32. A file that sets model.n_heads but not "
        "n_kv_heads therefore keeps 32, and is rejected unless its n_heads is a multiple of 32. Set "
        "n_kv_heads whenever you set n_heads.",
        "With distributed.tp > 1 it must be divisible by tp, rejected at validation (KF204).",
        "MoT: the image stream's key/value heads must equal it (model build, KF208).",
    ),
    "model.vocab_size": (_POSITIVE, "Must match the tokenizer: it sizes the embedding and the output head."),
    "model.ffn_dim_multiplier": (
        "The dense FFN width is 256 * ceil(int(4 * dim * 2/3 * ffn_dim_multiplier) / 256) unless "
        "model.ffn_hidden_dim is set.",
        "A width below zero cannot be built (model build, KF103).",
        "Cross-attention blocks use the same FFN width as the text blocks.",
    ),
    "model.ffn_hidden_dim": (
        "When set it replaces the computed FFN width for the dense FFN, cross-attention blocks and the base "
        "of the MoE expert width.",
        "A negative width cannot be built (model build, KF103).",
    ),
    "model.norm_type": ("An enum in the reference: only rmsnorm or layernorm, anything else is rejected at load "
                        "(KF103).",),
    "model.activation": (
        "An enum in the reference: silu, gelu or relu; anything else is rejected at load (KF103).",
        "silu builds a SwiGLU MLP (gate, up and down matrices); gelu and relu build a two-matrix MLP.",
    ),
    "model.max_seq_len": (
        "train.seq_len must not exceed it, rejected at validation (KF202).",
        "VLM: residual image tokens + vlm.max_text_len must fit, rejected at load when "
        "vision_encoder.num_tokens > 0 and otherwise when the model is built with the encoder's own token "
        "count (KF201).",
    ),
    "model.tie_embeddings": ("Not supported with distributed.pp > 1, rejected at validation (KF203).",),
    "model.qk_norm": ("Adds a per-head RMSNorm weight for queries and keys to every attention layer.",),
    "model.model_type": (
        "Looked up in the model registry when a text-only job is built without pipeline parallelism; an "
        "unknown name fails the model build (KF103).",
        "Not used by VLM jobs: the VLM wrapper always builds the transformer.",
    ),
    "model.sdpa_backend": ("One of auto, flash, efficient, cudnn, math; anything else is rejected at load "
                           "(KF103).",),
    "model.num_experts": (
        "0 builds a dense model; above 0 every moe_frequency-th block gets an MoE FFN and the moe_* range "
        "checks apply at load.",
        "vlm.arch = moma requires 0 (MoMa sizes its experts with vlm.moma_experts_per_modality), rejected at "
        "validation (KF207).",
        "distributed.ep > 1 requires num_experts > 0 and must divide it, rejected at validation (KF206).",
        "MoE with distributed.pp > 1 is rejected at validation (KF203).",
        "MoE with train.compile_model = true is accepted with a logged warning (KF404).",
    ),
    "model.moe_top_k": ("When num_experts > 0: must be positive and at most num_experts, rejected at load "
                        "(KF103).",),
    "model.moe_frequency": (
        "When num_experts > 0: must be positive, rejected at load (KF103).",
        "Block i (0-based) gets the MoE FFN when (i + 1) % moe_frequency == 0.",
    ),
    "model.moe_router": ("Looked up in the router registry when an MoE layer is built; an unknown name fails the "
                         "model build (KF103). MoMa ignores it.",),
    "model.moe_sequence_aux_loss_weight": ("When num_experts > 0: must be >= 0, rejected at load (KF103).",),
    "model.moe_bias_schedule": ("When num_experts > 0: constant, cosine_decay or linear_warmup, rejected at load "
                                "otherwise (KF103). A dense model accepts any value.",),
    "model.moe_expert_ffn_multiplier": (
        "When num_experts > 0: must be positive, rejected at load (KF103).",
        "Expert width = max(16, 16 * round(int(FFN width * multiplier) / 16)); MoMa experts use it too.",
    ),
    "model.moe_router_z_loss_weight": ("When num_experts > 0: must be >= 0, rejected at load (KF103).",),
    # -- [train] ----------------------------------------------------------------------------
    "train.batch_size": (_POSITIVE,),
    "train.seq_len": (
        _POSITIVE,
        "Must not exceed model.max_seq_len, rejected at validation (KF202).",
        "VLM: must hold residual image tokens + vlm.max_text_len, rejected at validation when "
        "vision_encoder.num_tokens > 0 (KF201).",
    ),
    "train.max_steps": (
        _POSITIVE,
        "A freeze stage whose start_step is above max_steps never fires (KF306).",
        "scheduler.warmup_steps >= max_steps means the LR never reaches its peak (KF407).",
    ),
    "train.grad_accum_steps": (_POSITIVE,),
    "train.grad_clip_norm": ("Must be > 0, rejected at load (KF103).",),
    "train.data_seed": ("Unset uses train.seed for the data order.",),
    "train.compile_model": ("Accepted with a logged warning for MoE models and for vlm.arch = moma (KF404).",),
    "train.mixed_precision": (
        "A Literal in the reference: bf16, fp16, fp32 or fp8; anything else is rejected at load (KF103).",
        "fp8 with distributed.tp > 1 is rejected at validation (KF205).",
    ),
    "train.activation_checkpointing": (
        "An enum in the reference: none, full or selective; anything else is rejected at load (KF103).",
        "full is a silent no-op with vlm.arch = moma (only selective wraps MoMa's attention) (KF404).",
    ),
    "train.loss_fn": ("Looked up in the loss registry at start-up; an unknown name stops the trainer (KF103).",),
    "train.ce_chunk_size": ("Used by chunked_cross_entropy only; 0 means 4096.",),
    # -- [optimizer] ------------------------------------------------------------------------
    "optimizer.name": ("Looked up in the optimizer registry at start-up; an unknown name stops the trainer "
                       "(KF103).",),
    "optimizer.lr": ("Must be > 0, rejected at load (KF103).",),
    "optimizer.weight_decay": ("Must be >= 0, rejected at load (KF103).",),
    "optimizer.betas": ("Exactly two numbers, each in [0, 1), rejected at load otherwise (KF102, KF103).",),
    "optimizer.muon_momentum": ("Must be strictly between 0 and 1, rejected at load (KF103).",),
    "optimizer.muon_ns_steps": (_POSITIVE,),
    "optimizer.schedule_free_warmup_steps": ("Must be >= 0, rejected at load (KF103).",),
    # -- [scheduler] ------------------------------------------------------------------------
    "scheduler.name": ("An enum in the reference: an unregistered schedule name is rejected at load (KF103).",),
    "scheduler.warmup_steps": (
        "Must be >= 0, rejected at load (KF103).",
        "At or above train.max_steps the LR never reaches its peak (KF407).",
    ),
    "scheduler.min_lr_ratio": ("Must be within [0, 1], rejected at load (KF103).",),
    "scheduler.wsd_decay_type": ("cosine, linear or sqrt, checked at load whatever the schedule (KF103).",),
    "scheduler.rex_alpha": ("Must be > 0, rejected at load (KF103).",),
    # -- [data] -----------------------------------------------------------------------------
    "data.tokenizer_path": ("Required for Hugging Face datasets, VLM and video jobs; the trainer raises at data "
                            "setup without it (KF405).",),
    "data.hf_dataset_name": ("Required for VLM image jobs (the trainer raises at data setup without it, KF405).",),
    "data.num_workers": ("Must be >= 0, rejected at load (KF103).",),
    "data.prefetch_factor": ("Must be >= 1, rejected at load (KF103).",),
    "data.mix_temperature": ("Must be > 0, rejected at load (KF103).",),
    "data.datasets[].path": ("An entry needs path or hf_name, rejected at load otherwise (KF104).",),
    "data.datasets[].weight": ("Must be > 0, rejected at load (KF103).",),
    "data.phases[].start_step": ("Must be >= 0 and strictly increasing across phases, rejected at load "
                                 "(KF103).",),
    "data.phases[].lr_scale": ("Must be > 0, rejected at load (KF103).",),
    "data.phases[].dataset_weights": ("Every weight must be >= 0, rejected at load (KF103).",),
    "data.anneal_start_step": (
        "Must be >= 0, rejected at load (KF103).",
        "Cannot be combined with data.phases: a value above 0 with phases set is rejected at load (KF103).",
    ),
    # -- [eval] -----------------------------------------------------------------------------
    "eval.enabled": (
        "When true, eval.dataset_path or eval.hf_dataset_name must be set, rejected at validation (KF104).",
        "Ignored for VLM jobs (KF404).",
    ),
    "eval.interval": (_POSITIVE,),
    "eval.steps": (_POSITIVE,),
    # -- [distributed] ----------------------------------------------------------------------
    "distributed.dp_shard": (
        "-1 (derive from the world size) or a positive integer; 0 and values below -1 are rejected at load "
        "(KF103).",
        "Given a world size, the product of all degrees must equal it, rejected at validation (KF201).",
    ),
    "distributed.dp_replicate": ("Must be >= 1, rejected at load (KF103).",),
    "distributed.tp": (
        "Must be >= 1, rejected at load (KF103).",
        "Above 1: model.n_heads and model.n_kv_heads must be divisible by it (KF204) and "
        "train.mixed_precision = fp8 is not supported (KF205), both rejected at validation.",
    ),
    "distributed.pp": (
        "Must be >= 1, rejected at load (KF103).",
        "Above 1 it is rejected at validation with a VLM job, with MoE or with tied embeddings (KF203).",
    ),
    "distributed.pp_schedule": ("An enum in the reference: 1f1b, gpipe or interleaved_1f1b, rejected at load "
                                "otherwise (KF103).",),
    "distributed.cp": ("Must be >= 1, rejected at load (KF103).",),
    "distributed.ep": (
        "Must be >= 1, rejected at load (KF103).",
        "Above 1 it requires an MoE model whose num_experts it divides (KF206), and is not supported with "
        "vlm.arch = moma (KF207), both rejected at validation.",
    ),
    # -- [checkpoint] -----------------------------------------------------------------------
    "checkpoint.interval": (_POSITIVE,),
    "checkpoint.async_mode": ("An enum in the reference: disabled, async or async_with_pinned_mem, rejected at "
                              "load otherwise (KF103).",),
    "checkpoint.export_dtype": ("A Literal in the reference: float32 or bfloat16, rejected at load otherwise "
                                "(KF103).",),
    "checkpoint.ignore_freeze_mismatch": ("When false, resuming from a checkpoint whose saved freeze metadata "
                                          "differs from the config's at that step stops the trainer (KF504).",),
    "checkpoint.dyn_ckpt_window.start": ("Must be >= 0, rejected at load (KF103).",),
    "checkpoint.dyn_ckpt_window.stop": ("Must be >= start, rejected at load (KF103).",),
    "checkpoint.dyn_ckpt_window.strategy": ("Must name a registered strategy (power2 ships), rejected at load "
                                            "(KF103).",),
    # -- [metrics] / [profiling] ----------------------------------------------------------------
    "metrics.log_interval": (_POSITIVE,),
    "profiling.end_step": ("Must be greater than profiling.start_step, rejected at load (KF103).",),
    "profiling.start_step": ("profiling.end_step must be greater than it, rejected at load (KF103).",),
    # -- [vision_encoder] ---------------------------------------------------------------------
    "vision_encoder.type": (
        "Must be a registered encoder, rejected at load (KF103).",
        "siglip2 and clip load a Hugging Face model and probe feature_dim and num_tokens from it; random is a "
        "parameter-free stub (16 tokens of 768 features unless set).",
    ),
    "vision_encoder.path": ("Required for the Hugging Face encoders (siglip2, clip); the model build fails "
                            "when it is empty (KF104).",),
    "vision_encoder.feature_dim": (
        "Must be >= 0, rejected at load (KF103); 0 takes it from the encoder at build.",
        "Setting it for a Hugging Face encoder overrides the probe; the reference logs a warning (KF404).",
        "adapter.type = attentional_pool needs adapter.pool_heads to divide it (model build, KF209).",
    ),
    "vision_encoder.num_tokens": (
        "Must be >= 0, rejected at load (KF103); 0 takes the count from the encoder at build.",
        "When above 0 the sequence budget is checked early: against model.max_seq_len at load and "
        "train.seq_len at validation (KF201). When 0 the model.max_seq_len check waits for the model build.",
        "Pooling adapters need a perfect square (a patch grid); attentional_pool also needs the grid side to "
        "be divisible by adapter.pool_window (at load when set, else at model build; KF103, KF209).",
        "Setting it for a Hugging Face encoder overrides the probe; the reference logs a warning (KF404).",
    ),
    # -- [adapter] -------------------------------------------------------------------------------
    "adapter.type": (
        "Must be a registered adapter, rejected at load (KF103).",
        "mlp_2layer and linear keep the token count; avgpool and attentional_pool pool the patch grid down "
        "to ceil(side / pool_window)^2 tokens.",
    ),
    "adapter.hidden_dim": ("Must be >= 0, rejected at load (KF103); 0 means model.dim. Used by mlp_2layer only.",),
    "adapter.activation": ("gelu, silu or relu, rejected at load otherwise (KF103). Used by mlp_2layer only.",),
    "adapter.pool_window": (
        _POSITIVE,
        "avgpool: tokens per frame = ceil(side / pool_window)^2 for a side x side patch grid, ragged edges "
        "included.",
        "attentional_pool: the grid side must be divisible by pool_window (at load when "
        "vision_encoder.num_tokens is set, else at model build; KF103, KF209).",
    ),
    "adapter.pool_heads": (
        _POSITIVE,
        "attentional_pool: must divide the vision feature dim, else the model build fails (KF209).",
    ),
    # -- [vlm] -----------------------------------------------------------------------------------
    "vlm.arch": (
        "Must be a registered arch, rejected at load otherwise (KF103).",
        "Selects the config class: the other arches' fields are unknown keys here, rejected at load (KF101).",
        "A --set override cannot switch it: the reference keeps the class built from the file and only "
        "rewrites the string (KF103).",
    ),
    "vlm.max_text_len": (
        _POSITIVE,
        "Every sample's text is padded to it; with the residual image tokens it must fit model.max_seq_len "
        "(at load, or at model build when vision_encoder.num_tokens = 0) and train.seq_len (at validation) "
        "(KF201).",
    ),
    "vlm.freeze": (
        "Applied once, in order, when the model is built and before the optimizer is created; a later spec "
        "wins over an earlier one for the parameters both select.",
        "module is an alias of vlm.module_patterns or, at build, a raw fnmatch pattern over parameter names.",
        "The training loop's effective_freeze accepts aliases only: a raw pattern raises ValueError after the "
        "first optimizer step (or at start-up when checkpoint.dyn_ckpt_window covers step 0, and on every "
        "resume) (KF301).",
        "Writing vlm.freeze replaces the default list: list vision_encoder again if it should stay frozen.",
        "A parameter frozen here is left out of the optimizer; unfreezing it in a later stage gives it "
        "gradients that are never applied (KF304).",
        "Every spec is a table with a module string; frozen defaults to true (KF102, KF104 at load).",
    ),
    "vlm.freeze_schedule": (
        "start_step values must be strictly increasing with no repeats, rejected at load (KF103).",
        "A stage fires when the step counter, incremented after each optimizer step, equals its start_step: "
        "start_step <= 0 never fires in a fresh run but is applied on resume (KF302).",
        "A stage after train.max_steps is never reached (KF306).",
        "Specs follow vlm.freeze's rules: aliases only once the loop evaluates them (KF301).",
        "On resume the trainer re-applies effective_freeze(step), one spec per module key with the latest "
        "stage winning; overlapping aliases can then differ from the uninterrupted run (KF303).",
        "Unfreezing a parameter that was frozen at build leaves it out of the optimizer (KF304).",
        "Every stage needs start_step and specs, rejected at load otherwise (KF104).",
    ),
    "vlm.module_patterns": (
        "Setting it replaces the arch's whole default map instead of extending it: re-list every alias you "
        "still use (KF406).",
        "Each value must be an array of fnmatch patterns; a bare string is iterated character by character "
        "and matches nothing (KF406).",
        "Its keys are the only module names effective_freeze accepts in freeze specs (KF301).",
    ),
    "vlm.cross_attention_every_n_layers": (
        _POSITIVE,
        "Builds model.n_layers // N cross-attention blocks; block k runs after text layer (k + 1) * N - 1 "
        "(0-based).",
        "A cadence above model.n_layers builds no block, so images never reach the model (KF402).",
    ),
    "vlm.cross_attention_n_heads": (
        "Must be >= 0, rejected at load (KF103); 0 resolves to model.n_heads.",
        "Cross-attention head dim = model.dim // these heads.",
    ),
    "vlm.cross_attention_n_kv_heads": (
        "Must be >= 0, rejected at load (KF103); 0 resolves to the cross-attention query heads.",
        "The query heads must be a multiple of it: the blocks build, but the first forward pass fails "
        "(KF409).",
    ),
    "vlm.mot_modalities": (
        "At least two entries, including image and text, no duplicates; rejected at load otherwise (KF103).",
        "Every entry gets its own attention and FFN weights; entries beyond image and text build, but the "
        "first forward pass raises (KF409).",
    ),
    "vlm.mot_image_n_heads": (
        "Must be >= 0, rejected at load (KF103); 0 resolves to model.n_heads.",
        "This version needs it to resolve to model.n_heads (one global attention over all streams); the "
        "model build fails otherwise (KF208).",
    ),
    "vlm.mot_image_n_kv_heads": (
        "Must be >= 0, rejected at load (KF103); 0 resolves to model.n_kv_heads.",
        "Must resolve to model.n_kv_heads, else the model build fails (KF208).",
    ),
    "vlm.mot_warm_start_from_text": ("Requires vlm.mot_warm_start_path, rejected at load without it (KF104).",),
    "vlm.mot_warm_start_path": ("Must be set when mot_warm_start_from_text = true, rejected at load otherwise "
                                "(KF104). Read at the start of a fresh run, not on resume.",),
    "vlm.moma_modalities": (
        "At least two entries, including image and text, no duplicates; rejected at load otherwise (KF103).",
        "Entries beyond image and text get expert groups that no token is ever routed to (KF409).",
    ),
    "vlm.moma_experts_per_modality": (
        "Needs exactly one key per entry of vlm.moma_modalities: a missing key is rejected at load (KF104), "
        "an extra key too (KF103).",
        "Every count must be positive, rejected at load (KF103); for one dense FFN per modality use "
        "arch = mot.",
        "model.num_experts must stay 0 with MoMa, rejected at validation (KF207).",
    ),
    "vlm.moma_capacity_factor": (
        "Must be >= 0, rejected at load (KF103).",
        "0 means 1 / experts of each modality, so every expert takes an equal share of its modality's "
        "tokens.",
    ),
    # -- freeze specs and stages -------------------------------------------------------------
    "vlm.freeze[].module": (
        "Required, rejected at load without it (KF104).",
        "A name that is not an alias raises in the training loop's effective_freeze (KF301).",
    ),
    "vlm.freeze_schedule[].start_step": (
        "Required; strictly increasing across stages, rejected at load otherwise (KF104, KF103).",
        "<= 0 never fires in a fresh run (KF302); above train.max_steps never fires (KF306).",
    ),
    "vlm.freeze_schedule[].specs": ("Required, rejected at load without it (KF104).",),
    "vlm.freeze_schedule[].specs[].module": (
        "Required (KF104); a name that is not an alias raises in effective_freeze when the stage is "
        "reached (KF301).",
    ),
    # -- [video] ---------------------------------------------------------------------------------
    "video.dataset_type": ("Must be a registered video dataset, rejected at load (KF103).",),
    "video.sampling_policy": ("Must be a registered sampling policy, rejected at load (KF103).",),
    "video.split": ("train or validation, rejected at load otherwise (KF103).",),
    "video.max_samples": ("Must be >= 0, rejected at load (KF103); 0 reads the whole manifest.",),
    "video.max_frames": (
        "Must be >= 1 and >= video.min_frames, rejected at load (KF103).",
        "Visual tokens per clip = max_frames x tokens per frame after the adapter; they enter the sequence "
        "budget (KF201).",
    ),
    "video.min_frames": ("Must be >= 1 and <= video.max_frames, rejected at load (KF103).",),
    "video.fps": ("Must be > 0, rejected at load (KF103).",),
    "video.frame_size": (_POSITIVE,),
}

# One-line docs for fields of the freeze value types (FreezeSpec, FreezeStage).
ENTRY_DOCS: dict[str, str] = {
    "vlm.freeze[].module": "alias of vlm.module_patterns, or a raw fnmatch pattern over parameter names",
    "vlm.freeze[].frozen": "true freezes the selected parameters, false makes them trainable",
    "vlm.freeze_schedule[].start_step": "optimizer step at which the stage's specs are applied",
    "vlm.freeze_schedule[].specs": "freeze specs of the stage, each {module, frozen}",
    "vlm.freeze_schedule[].specs[].module": "alias of vlm.module_patterns, or a raw fnmatch pattern",
    "vlm.freeze_schedule[].specs[].frozen": "true freezes the selected parameters, false makes them trainable",
}
