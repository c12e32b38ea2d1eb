"""What a config key means beyond what its declaration and its rules already say.

`explain --field` derives the constraints (from ``setting(...)``) and the rules
that read a key (from the rule objects, with code and stage); these notes add
only what cannot be derived: semantics, formulas and the reference's quirks.
They cite no rule codes, so they cannot drift from the rules.
"""

from __future__ import annotations

NOTES: dict[str, tuple[str, ...]] = {
    # -- sections --------------------------------------------------------------------------------
    "model": ("Always present; every field has a default (a 7B-shaped dense model), so set the ones that matter.",),
    "data": ("A text job without dataset_path, hf_dataset_name or datasets trains on random token ids.",
             "A VLM job needs data.hf_dataset_name and data.tokenizer_path at data setup; they are often passed "
             "with --set at launch."),
    "eval": ("Ignored for VLM jobs: the trainer logs a warning and skips evaluation.",),
    "distributed": ("With a known world size (--world-size N): dp_replicate x dp_shard x tp x pp x cp x ep must "
                    "equal N, dp_shard = -1 taking whatever is left.",),
    "checkpoint.dyn_ckpt_window": (
        "Optional dense-save window; checkpoints saved inside it are kept regardless of keep_last_n.",
        "When it covers step 0 the trainer saves the initial weights before the first step, which also evaluates "
        "the freeze specs at start-up (see vlm.freeze).",
    ),
    "vision_encoder": ("Required when [vlm] is present; without [vlm] it has no effect.",),
    "adapter": ("Optional: when [vlm] is set and [adapter] is absent, the default mlp_2layer adapter is filled in at "
                "load. Without [vlm] it has no effect.",),
    "vlm": (
        "Its presence makes the job a VLM run; absent means text-only.",
        "vlm.arch selects the config class; each arch accepts its own extra fields and the loader rejects the "
        "others' as unknown keys.",
        "The sequence budget, residual image tokens + vlm.max_text_len, must fit model.max_seq_len (at load when "
        "vision_encoder.num_tokens > 0, else at model build) and train.seq_len (at validation).",
    ),
    "video": ("Multiplies the visual tokens: video.max_frames x tokens per frame after the adapter enter the "
              "sequence budget.",),
    # -- [model] ---------------------------------------------------------------------------------
    "model.dim": ("VLM: the adapter projects vision features to this width, and cross-attention blocks run at it.",),
    "model.n_layers": ("cross_attention arch: n_layers // vlm.cross_attention_every_n_layers cross-attention blocks "
                       "are built.",),
    "model.n_heads": (
        "It is what vlm.cross_attention_n_heads = 0 and vlm.mot_image_n_heads = 0 resolve to.",
        "Changing n_heads without setting n_kv_heads keeps n_kv_heads = 32 (see model.n_kv_heads).",
    ),
    "model.n_kv_heads": (
        "Unset means plain multi-head attention: it is resolved to model.n_heads when ModelConfig is built.",
        "Quirk: the loader applies the file on top of a ModelConfig already built from the defaults, where "
        "n_kv_heads was resolved to the default n_heads = 32. A file that sets model.n_heads but not n_kv_heads "
        "therefore keeps 32, and is rejected unless its n_heads is a multiple of 32. Set n_kv_heads whenever you "
        "set n_heads.",
    ),
    "model.vocab_size": ("Must match the tokenizer: it sizes the embedding and the output head.",),
    "model.ffn_dim_multiplier": (
        "The dense FFN width is 256 * ceil(int(4 * dim * 2/3 * ffn_dim_multiplier) / 256) unless "
        "model.ffn_hidden_dim is set.",
        "Cross-attention blocks use the same FFN width as the text blocks.",
    ),
    "model.ffn_hidden_dim": ("When set it replaces the computed FFN width for the dense FFN, cross-attention blocks "
                             "and the base of the MoE expert width.",),
    "model.activation": ("silu builds a SwiGLU MLP (gate, up and down matrices); gelu and relu build a two-matrix "
                         "MLP.",),
    "model.qk_norm": ("Adds a per-head RMSNorm weight for queries and keys to every attention layer.",),
    "model.model_type": ("Not used by VLM jobs: the VLM wrapper always builds the transformer.",),
    "model.num_experts": ("0 builds a dense model; above 0 every moe_frequency-th block gets an MoE FFN and the "
                          "moe_* knobs are checked.",),
    "model.moe_frequency": ("Block i (0-based) gets the MoE FFN when (i + 1) % moe_frequency == 0.",),
    "model.moe_router": ("MoMa ignores it.",),
    "model.moe_bias_schedule": ("A dense model accepts any value.",),
    "model.moe_expert_ffn_multiplier": ("Expert width = max(16, 16 * round(int(FFN width * multiplier) / 16)); "
                                        "MoMa experts use it too.",),
    # -- [train] ---------------------------------------------------------------------------------
    "train.data_seed": ("Unset uses train.seed for the data order.",),
    "train.ce_chunk_size": ("Used by chunked_cross_entropy only; 0 means 4096.",),
    # -- [data] ----------------------------------------------------------------------------------
    "data.tokenizer_path": ("Needed for Hugging Face datasets, VLM and video jobs.",),
    # -- [checkpoint] ----------------------------------------------------------------------------
    "checkpoint.ignore_freeze_mismatch": ("When false, resuming from a checkpoint whose saved freeze metadata "
                                          "differs from the config's at that step stops the trainer.",),
    # -- [vision_encoder] ------------------------------------------------------------------------
    "vision_encoder.type": ("siglip2 and clip load a Hugging Face model and probe feature_dim and num_tokens from "
                            "it; random is a parameter-free stub (16 tokens of 768 features unless set).",),
    "vision_encoder.feature_dim": ("0 takes it from the encoder at build. Setting it for a Hugging Face encoder "
                                   "overrides the probe.",),
    "vision_encoder.num_tokens": (
        "0 takes the count from the encoder at build; then the model.max_seq_len budget is checked only when the "
        "model is built.",
        "Pooling adapters need a perfect square (a patch grid); attentional_pool also needs the grid side to be "
        "divisible by adapter.pool_window.",
    ),
    # -- [adapter] -------------------------------------------------------------------------------
    "adapter.type": ("mlp_2layer and linear keep the token count; avgpool and attentional_pool pool the patch grid "
                     "down to ceil(side / pool_window)^2 tokens.",),
    "adapter.hidden_dim": ("0 means model.dim. Used by mlp_2layer only.",),
    "adapter.activation": ("Used by mlp_2layer only.",),
    "adapter.pool_window": ("avgpool: tokens per frame = ceil(side / pool_window)^2 for a side x side patch grid, "
                            "ragged edges included; attentional_pool needs the side divisible by it.",),
    # -- [vlm] -----------------------------------------------------------------------------------
    "vlm.arch": ("A --set override cannot switch it: the reference keeps the class built from the file and only "
                 "rewrites the string.",),
    "vlm.max_text_len": ("Every sample's text is padded to it.",),
    "vlm.freeze": (
        "Applied once, in order, when the model is built and before the optimizer is created; a later spec wins "
        "over an earlier one for the parameters both select.",
        "module is an alias of vlm.module_patterns or, at build, a raw fnmatch pattern over parameter names. The "
        "training loop's effective_freeze accepts aliases only: a raw pattern raises after the first optimizer step "
        "(or at start-up when checkpoint.dyn_ckpt_window covers step 0, and on every resume).",
        "Writing vlm.freeze replaces the default list: list vision_encoder again if it should stay frozen.",
        "A parameter frozen here is left out of the optimizer; unfreezing it in a later stage gives it gradients "
        "that are never applied.",
    ),
    "vlm.freeze_schedule": (
        "A stage fires when the step counter, incremented after each optimizer step, equals its start_step: "
        "start_step <= 0 never fires in a fresh run but is applied on resume.",
        "On resume the trainer re-applies effective_freeze(step), one spec per module key with the latest stage "
        "winning; overlapping aliases can then differ from the uninterrupted run.",
    ),
    "vlm.module_patterns": (
        "Setting it replaces the arch's whole default map instead of extending it: re-list every alias you still "
        "use.",
        "Each value must be an array of fnmatch patterns; the trainer iterates a bare string character by "
        "character.",
        "Its keys are the only module names effective_freeze accepts in freeze specs.",
    ),
    "vlm.cross_attention_every_n_layers": ("Builds model.n_layers // N cross-attention blocks; block k runs after "
                                           "text layer (k + 1) * N - 1 (0-based).",),
    "vlm.cross_attention_n_heads": ("0 resolves to model.n_heads; the head dim is model.dim // these heads.",),
    "vlm.cross_attention_n_kv_heads": ("0 resolves to the cross-attention query heads.",),
    "vlm.mot_modalities": ("Every entry gets its own attention and FFN weights.",),
    "vlm.mot_image_n_heads": ("0 resolves to model.n_heads; this version needs exactly that (one global "
                              "attention).",),
    "vlm.mot_image_n_kv_heads": ("0 resolves to model.n_kv_heads; this version needs exactly that.",),
    "vlm.mot_warm_start_path": ("Read at the start of a fresh run, not on resume.",),
    "vlm.moma_experts_per_modality": ("Needs exactly one key per entry of vlm.moma_modalities; for one dense FFN "
                                      "per modality use arch = mot.",),
    "vlm.moma_capacity_factor": ("0 means 1 / experts of each modality, so every expert takes an equal share of "
                                 "its modality's tokens.",),
    # -- [video] ---------------------------------------------------------------------------------
    "video.max_frames": ("Visual tokens per clip = max_frames x tokens per frame after the adapter.",),
    "video.max_samples": ("0 reads the whole manifest.",),
}
