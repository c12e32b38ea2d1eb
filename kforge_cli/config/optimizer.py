"""[optimizer]."""

from __future__ import annotations

from typing import ClassVar

from kforge_cli.config.fields import JobCondition, Use, setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.rule import STARTUP

# Optimizers whose constructor is torch.optim.AdamW (Muon's for its 1-D parameters): it checks lr, eps, betas.
ADAMW_BASED = ("adamw", "muon")
BUILT_ON_ADAMW = JobCondition('optimizer.name is "adamw" or "muon" (torch.optim.AdamW checks it)',
                              lambda s: s.job.optimizer.name in ADAMW_BASED, ("optimizer.name",))
MUON = JobCondition('optimizer.name = "muon"', lambda s: s.job.optimizer.name == "muon", ("optimizer.name",))


@record
class OptimizerConfig(Section):
    SECTION: ClassVar[str] = "optimizer"

    name: str = setting("adamw", "optimizer registry key", registry="optimizer", looked_up=STARTUP)
    lr: float = setting(3e-4, "peak learning rate", gt=0)
    weight_decay: float = setting(0.1, "decoupled weight decay (matrices only; not biases, norms)", ge=0,
                                 fix="use 0.0 to disable it")
    betas: tuple[float, float] = setting((0.9, 0.95), "Adam betas (beta1, beta2)", items="[0, 1)",
                                         fix="e.g. optimizer.betas = [0.9, 0.95]")
    eps: float = setting(1e-8, "Adam epsilon", used=(
        Use(STARTUP, "torch.optim.AdamW compares it with 0.0", BUILT_ON_ADAMW),))
    fused: bool = setting(True, "fused AdamW kernel when CUDA is available")
    muon_momentum: float = setting(0.95, "Muon momentum", interval="(0, 1)", fix="use 0.95")
    muon_ns_steps: int = setting(5, "Muon Newton-Schulz iterations", gt=0, fix="use 5")
    muon_adam_lr: float | None = setting(None, "LR of Muon's AdamW fallback for 1-D params (unset = lr)", used=(
        Use(STARTUP, "Muon's internal torch.optim.AdamW compares it with 0.0 as its learning rate", MUON),))
    schedule_free_warmup_steps: int = setting(0, "internal warmup of schedule_free_adamw", unit="steps", ge=0)
