"""[train]: the training loop's hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.section import Section

MIXED_PRECISION = ("bf16", "fp16", "fp32", "fp8")
ACTIVATION_CHECKPOINTING = ("none", "full", "selective")


@dataclass
class TrainConfig(Section):
    SECTION: ClassVar[str] = "train"

    batch_size: int = setting(8, "per-device micro-batch size", unit="sequences")
    seq_len: int = setting(2048, "attention sequence length of a training sample", unit="tokens")
    max_steps: int = setting(100000, "optimizer steps to train for", unit="steps")
    grad_accum_steps: int = setting(1, "micro-batches accumulated per optimizer step")
    grad_clip_norm: float = setting(1.0, "gradient-norm clipping threshold")
    seed: int = setting(42, "seed for parameter init, dropout and (by default) data order")
    data_seed: int | None = setting(None, "seed for data order only; unset falls back to seed")
    compile_model: bool = setting(True, "wrap the model in torch.compile")
    mixed_precision: str = setting("bf16", "parameter / compute precision", choices=MIXED_PRECISION, enum=True)
    activation_checkpointing: str = setting("none", "activation checkpointing mode",
                                            choices=ACTIVATION_CHECKPOINTING, enum=True)
    loss_fn: str = setting("cross_entropy", "loss registry key", registry="loss")
    z_loss_weight: float = setting(0.0, "logit z-loss coefficient (0 = off)")
    ce_chunk_size: int = setting(0, "token chunk of chunked_cross_entropy (0 = 4096)")
    shutdown_timeout_sec: float = setting(600.0, "graceful shutdown timeout", unit="s")
    nccl_health_check_interval: int = setting(0, "check NCCL health every N steps (0 = never)")

    @property
    def is_fp8(self) -> bool:
        return self.mixed_precision == "fp8"

    @property
    def effective_data_seed(self) -> int:
        return self.data_seed if self.data_seed is not None else self.seed

    def rules(self, c: Checker) -> None:
        for name, message in (
            ("batch_size", "batch_size must be positive"),
            ("seq_len", "seq_len must be positive"),
            ("max_steps", "max_steps must be positive"),
            ("grad_accum_steps", "grad_accum_steps must be positive"),
            ("grad_clip_norm", "grad_clip_norm must be positive"),
        ):
            value = getattr(self, name)
            if is_number(value) and value <= 0:
                c.error("KF103", name, f"{message} (got {value})", f"set train.{name} to a positive value")
