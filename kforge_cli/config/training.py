"""[train]: the training loop's hyperparameters."""

from __future__ import annotations

from typing import Any, ClassVar

from kforge_cli.config.fields import JobCondition, Use, setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.rule import LOOP, STARTUP

MIXED_PRECISION = ("bf16", "fp16", "fp32", "fp8")


def _draws_data(s: Any) -> bool:
    # Every data source but the synthetic batches of a text run goes through a seeded sampler or shuffle.
    job = s.job
    data = job.data
    return job.vlm is not None or bool(data.datasets) or bool(data.dataset_path) or bool(data.hf_dataset_name)


DRAWS_DATA = JobCondition("a data source is configured (a VLM job, data.dataset_path, data.hf_dataset_name or "
                          "data.datasets)", _draws_data,
                          ("vlm.arch", "data.datasets", "data.dataset_path", "data.hf_dataset_name"))
CHUNKED_LOSS = JobCondition('train.loss_fn = "chunked_cross_entropy"',
                            lambda s: s.job.train.loss_fn == "chunked_cross_entropy", ("train.loss_fn",))
ACTIVATION_CHECKPOINTING = ("none", "full", "selective")


@record
class TrainConfig(Section):
    SECTION: ClassVar[str] = "train"

    batch_size: int = setting(8, "per-device micro-batch size", unit="sequences", gt=0)
    seq_len: int = setting(2048, "attention sequence length of a training sample", unit="tokens", gt=0)
    max_steps: int = setting(100000, "optimizer steps to train for", unit="steps", gt=0)
    grad_accum_steps: int = setting(1, "micro-batches accumulated per optimizer step", gt=0)
    grad_clip_norm: float = setting(1.0, "gradient-norm clipping threshold", gt=0)
    seed: int = setting(42, "seed for parameter init, dropout and (by default) data order", used=(
        Use(STARTUP, "init_distributed seeds torch, random and NumPy with seed + pipeline rank"),))
    data_seed: int | None = setting(None, "seed for data order only; unset falls back to seed", used=(
        Use(LOOP, "the data sampler seeds its shuffle with data_seed + epoch when the loop first draws a batch",
            DRAWS_DATA),))
    compile_model: bool = setting(True, "wrap the model in torch.compile")
    mixed_precision: str = setting("bf16", "parameter / compute precision", choices=MIXED_PRECISION, enum=True)
    activation_checkpointing: str = setting("none", "activation checkpointing mode",
                                            choices=ACTIVATION_CHECKPOINTING, enum=True)
    loss_fn: str = setting("cross_entropy", "loss registry key", registry="loss", looked_up=STARTUP)
    z_loss_weight: float = setting(0.0, "logit z-loss coefficient (0 = off)", used=(
        Use(STARTUP, "build_loss_fn compares it with 0"),))
    ce_chunk_size: int = setting(0, "token chunk of chunked_cross_entropy (0 = 4096)", used=(
        Use(STARTUP, "build_loss_fn compares it with 0", CHUNKED_LOSS),))
    shutdown_timeout_sec: float = setting(600.0, "graceful shutdown timeout", unit="s", used=(
        Use(None, "only the SIGTERM/SIGUSR1 handler compares it with 0, so the run fails when it is told to "
            "shut down (a preemption), not before"),))
    nccl_health_check_interval: int = setting(0, "check NCCL health every N steps (0 = never)", used=(
        Use(LOOP, "the loop compares it with 0 after the first optimizer step (step 1)"),))

    @property
    def is_fp8(self) -> bool:
        return self.mixed_precision == "fp8"

    @property
    def effective_data_seed(self) -> int:
        return self.data_seed if self.data_seed is not None else self.seed
