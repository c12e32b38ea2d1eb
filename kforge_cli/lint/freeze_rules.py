"""Freeze checks plain validate can make without parameter names.

``validate --deep`` and ``freeze-plan`` decide these per parameter; without
torch, kforge only claims what holds for every parameter name a component can
have: a component is "wholly frozen" when an alias covers any name under it.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from kforge_cli.config.fields import Checker
from kforge_cli.config.vlm import FreezeSpec, FreezeStage, VLMConfig

# Names of very different shapes under each component; a pattern that matches
# all of them matches everything under the component.
_PROBES = ("layers.0.attention.q_proj.weight", "token_embedding.embedding.weight", "proj1.bias", "norm.weight",
           "cross_attention_layers.3.mlp.down_proj.weight", "vision_tower.encoder.layers.11.mlp.fc1.weight", "x")


def _covers(patterns: list[str], component: str) -> bool:
    return all(any(fnmatch.fnmatchcase(f"{component}.{probe}", p) for p in patterns) for probe in _PROBES)


def _may_touch(patterns: list[str], component: str) -> bool:
    """Whether a pattern could match some parameter under ``component`` (erring towards yes)."""
    scope = component + "."
    for pattern in patterns:
        literal = pattern
        for i, ch in enumerate(pattern):
            if ch in "*?[":
                literal = pattern[:i]
                break
        if pattern == component or literal.startswith(scope) or scope.startswith(literal):
            return True
    return False


def _components(job: Any) -> list[str]:
    encoder = job.vision_encoder
    has_encoder_params = encoder is not None and getattr(encoder, "type", "random") != "random"
    return ["transformer", "adapter"] + (["vision_encoder"] if has_encoder_params else [])


def _apply(frozen: dict[str, bool], specs: Any, vlm: VLMConfig) -> None:
    patterns_by_alias = vlm.module_patterns if isinstance(vlm.module_patterns, dict) else {}
    for spec in specs:
        if not isinstance(spec, FreezeSpec) or not isinstance(spec.module, str):
            continue
        patterns = patterns_by_alias.get(spec.module, [spec.module])
        if not isinstance(patterns, list):
            continue
        patterns = [p for p in patterns if isinstance(p, str)]
        for component in frozen:
            if _covers(patterns, component):
                frozen[component] = spec.frozen
            elif not spec.frozen and _may_touch(patterns, component):
                # Part of it becomes trainable again: no longer certainly frozen.
                frozen[component] = False


def needs_freeze_engine(vlm: VLMConfig, max_steps: Any) -> bool:
    """False when KF301, KF302 and KF306 certainly have nothing to report (spares importing the engine)."""
    aliases = vlm.module_patterns if isinstance(vlm.module_patterns, dict) else {}
    specs = list(vlm.freeze)
    for stage in vlm.freeze_schedule:
        if not isinstance(stage, FreezeStage) or not isinstance(stage.start_step, int):
            return True
        if not (isinstance(max_steps, int) and 1 <= stage.start_step <= max_steps):
            return True
        specs.extend(stage.specs)
    return not all(isinstance(s, FreezeSpec) and isinstance(s.module, str) and s.module in aliases for s in specs)


def nothing_trainable_rule(job: Any, c: Checker) -> None:
    """KF307 when the specs certainly freeze every component before some optimizer step."""
    vlm = job.vlm
    if not isinstance(vlm, VLMConfig):
        return
    frozen = {component: False for component in _components(job)}
    _apply(frozen, vlm.freeze, vlm)
    if all(frozen.values()):
        c.error("KF307", "vlm.freeze",
                f"vlm.freeze freezes every component ({', '.join(frozen)}) at build time: no parameter is "
                "trainable, so the first backward pass fails at step 1",
                "leave at least one component trainable (e.g. drop the transformer or adapter spec)")
        return
    max_steps = job.train.max_steps
    stages = [(i, s) for i, s in enumerate(vlm.freeze_schedule)
              if isinstance(s, FreezeStage) and isinstance(s.start_step, int)]
    for index, stage in sorted(stages, key=lambda item: item[1].start_step):
        if not 1 <= stage.start_step < max_steps:
            continue  # never fired by a fresh run, or no optimizer step follows it
        _apply(frozen, stage.specs, vlm)
        if all(frozen.values()):
            c.error("KF307", f"vlm.freeze_schedule[{index}]",
                    f"the stage at step {stage.start_step} leaves no trainable parameter "
                    f"({', '.join(frozen)} all frozen), so the backward pass of step {stage.start_step + 1} fails",
                    "keep at least one component trainable in this stage")
            return
