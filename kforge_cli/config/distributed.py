"""[distributed]: parallelism degrees."""

from __future__ import annotations

from typing import ClassVar

from kforge_cli.config.fields import JobCondition, Use, setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.rule import STARTUP

PIPELINE_SCHEDULES = ("1f1b", "gpipe", "interleaved_1f1b")


MULTI_GPU = JobCondition("the job runs on more than one GPU (--world-size > 1)",
                         lambda s: s.world_size is not None and s.world_size > 1, ())


@record
class DistributedConfig(Section):
    SECTION: ClassVar[str] = "distributed"

    dp_shard: int = setting(-1, "FSDP shard degree (-1 = every GPU left over)", gt=0, allow=(-1,),
                           fix="use -1 to take every GPU left after the other degrees")
    dp_replicate: int = setting(1, "data-parallel replica groups (HSDP)", ge=1)
    tp: int = setting(1, "tensor-parallel degree", ge=1)
    pp: int = setting(1, "pipeline-parallel degree (not supported with VLM, MoE or tied embeddings)", ge=1)
    pp_schedule: str = setting("1f1b", "pipeline schedule", choices=PIPELINE_SCHEDULES, enum=True)
    cp: int = setting(1, "context-parallel degree", ge=1)
    ep: int = setting(1, "expert-parallel degree (MoE only; must divide num_experts)", ge=1)
    nccl_timeout_sec: int = setting(1800, "NCCL collective timeout", unit="s", used=(
        Use(STARTUP, "init_distributed passes timedelta(seconds=nccl_timeout_sec) to init_process_group",
            MULTI_GPU),))
    backend: str = setting("cpu:gloo,cuda:nccl", "torch.distributed backend string", used=(
        Use(STARTUP, "init_distributed passes it to init_process_group, which accepts only a string", MULTI_GPU),))

    def other_degrees(self) -> int:
        return self.dp_replicate * self.tp * self.pp * self.cp * self.ep
