"""[distributed]: parallelism degrees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.section import Section

PIPELINE_SCHEDULES = ("1f1b", "gpipe", "interleaved_1f1b")


@dataclass
class DistributedConfig(Section):
    SECTION: ClassVar[str] = "distributed"

    dp_shard: int = setting(-1, "FSDP shard degree (-1 = every GPU left over)")
    dp_replicate: int = setting(1, "data-parallel replica groups (HSDP)")
    tp: int = setting(1, "tensor-parallel degree")
    pp: int = setting(1, "pipeline-parallel degree (not supported with VLM, MoE or tied embeddings)")
    pp_schedule: str = setting("1f1b", "pipeline schedule", choices=PIPELINE_SCHEDULES, enum=True)
    cp: int = setting(1, "context-parallel degree")
    ep: int = setting(1, "expert-parallel degree (MoE only; must divide num_experts)")
    nccl_timeout_sec: int = setting(1800, "NCCL collective timeout", unit="s")
    backend: str = setting("cpu:gloo,cuda:nccl", "torch.distributed backend string")

    def other_degrees(self) -> int:
        return self.dp_replicate * self.tp * self.pp * self.cp * self.ep

    def rules(self, c: Checker) -> None:
        if is_number(self.dp_shard) and (self.dp_shard == 0 or self.dp_shard < -1):
            c.error("KF103", "dp_shard", "dp_shard must be -1 (auto) or positive",
                    "use -1 to take every GPU left after the other degrees")
        for name in ("dp_replicate", "tp", "pp", "cp", "ep"):
            value = getattr(self, name)
            if is_number(value) and value < 1:
                c.error("KF103", name, f"{name} must be >= 1", f"use distributed.{name} = 1 to disable it")

    def world_size_findings(self, world_size: int, c: Checker) -> None:
        """JobConfig.validate's world-size arithmetic."""
        other = self.other_degrees()
        if self.dp_shard > 0:
            dp_shard = self.dp_shard
        else:
            if other <= 0 or world_size % other != 0:
                c.error("KF200", None,
                        f"world_size ({world_size}) not divisible by dp_replicate*tp*pp*cp*ep ({other})",
                        "make the product of the fixed degrees divide the number of GPUs")
                return
            dp_shard = world_size // other
        expected = other * dp_shard
        if expected != world_size:
            c.error("KF200", "dp_shard",
                    f"Parallelism dimensions ({self.dp_replicate} \u00d7 {dp_shard} \u00d7 {self.tp} \u00d7 "
                    f"{self.pp} \u00d7 {self.cp} \u00d7 {self.ep} = {expected}) do not match world_size "
                    f"({world_size})",
                    "set distributed.dp_shard = -1 to derive it from the world size"
                    if self.dp_shard > 0 else None)
