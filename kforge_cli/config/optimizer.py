"""[optimizer]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.section import Section


@dataclass
class OptimizerConfig(Section):
    SECTION: ClassVar[str] = "optimizer"

    name: str = setting("adamw", "optimizer registry key", registry="optimizer")
    lr: float = setting(3e-4, "peak learning rate")
    weight_decay: float = setting(0.1, "decoupled weight decay (matrices only; not biases, norms)")
    betas: tuple[float, float] = setting((0.9, 0.95), "Adam betas (beta1, beta2), each in [0, 1)")
    eps: float = setting(1e-8, "Adam epsilon")
    fused: bool = setting(True, "fused AdamW kernel when CUDA is available")
    muon_momentum: float = setting(0.95, "Muon momentum, in (0, 1)")
    muon_ns_steps: int = setting(5, "Muon Newton-Schulz iterations")
    muon_adam_lr: float | None = setting(None, "LR of Muon's AdamW fallback for 1-D params (unset = lr)")
    schedule_free_warmup_steps: int = setting(0, "internal warmup of schedule_free_adamw", unit="steps")

    def rules(self, c: Checker) -> None:
        if is_number(self.lr) and self.lr <= 0:
            c.error("KF103", "lr", f"lr must be positive (got {self.lr})", "e.g. optimizer.lr = 3e-4")
        if is_number(self.weight_decay) and self.weight_decay < 0:
            c.error("KF103", "weight_decay", "weight_decay must be non-negative", "use 0.0 to disable it")
        betas = self.betas
        if isinstance(betas, (tuple, list)) and len(betas) >= 2 and all(is_number(b) for b in betas[:2]):
            if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
                c.error("KF103", "betas", f"betas must be in [0, 1) (got {list(betas)})",
                        "e.g. optimizer.betas = [0.9, 0.95]")
        if is_number(self.muon_momentum) and not (0 < self.muon_momentum < 1):
            c.error("KF103", "muon_momentum", "muon_momentum must be in (0, 1)", "use 0.95")
        if is_number(self.muon_ns_steps) and self.muon_ns_steps <= 0:
            c.error("KF103", "muon_ns_steps", "muon_ns_steps must be positive", "use 5")
        if is_number(self.schedule_free_warmup_steps) and self.schedule_free_warmup_steps < 0:
            c.error("KF103", "schedule_free_warmup_steps", "schedule_free_warmup_steps must be non-negative",
                    "use 0")
