"""The KF3xx freeze findings.

KF301, KF302 and KF306 need only the config (``config_rules``); the others
compare replays over the parameter list (``parameter_rules``). Every message
names the stage, the alias and the parameters affected; every hint states a
fix that works in the reference trainer.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kforge_cli.config.vlm import module_patterns_for
from kforge_cli.findings import Finding, error, warning
from kforge_cli.freeze.matching import Matcher, alias_patterns, indices, popcount
from kforge_cli.freeze.simulate import CONSTRUCTION, Analysis, FreezePolicy, SpecRef, StageRef, Trace
from kforge_cli.freeze.units import human_count, plural

TRAINING_LOOP = "training loop"
TRAINER_STARTUP = "trainer startup"
_EXAMPLES = 3


@dataclass
class Context:
    """What the rules need to describe parameters: names, sizes, step ranges."""

    names: Sequence[str]
    numels: Sequence[int]
    construction_frozen: int
    boundaries: Sequence[int]
    alias_masks: dict[str, int]
    unknown_prefixes: Sequence[str]

    def numel(self, mask: int) -> int:
        return sum(self.numels[i] for i in indices(mask))

    def size(self, mask: int) -> str:
        return f"{plural(popcount(mask), 'parameter')} ({human_count(self.numel(mask))} elements)"

    def examples(self, mask: int) -> str:
        picked = indices(mask)
        shown = ", ".join(self.names[i] for i in picked[:_EXAMPLES])
        return shown + (", \u2026" if len(picked) > _EXAMPLES else "")

    def describe(self, mask: int) -> str:
        """'the 9 parameters of alias 'x' (37.1K elements)', or a count with examples."""
        whole = [alias for alias, m in self.alias_masks.items() if m == mask]
        n, numel = popcount(mask), human_count(self.numel(mask))
        if whole:
            count = "the one parameter" if n == 1 else f"the {n} parameters"
            return f"{count} of alias {whole[0]!r} ({numel} elements)"
        return f"{plural(n, 'parameter')} ({numel} elements, e.g. {self.examples(mask)})"

    def data(self, mask: int) -> dict[str, Any]:
        return {"count": popcount(mask), "numel": self.numel(mask),
                "params": [self.names[i] for i in indices(mask)]}

    def step_range(self, start: int) -> str:
        later = [b for b in self.boundaries if b > start]
        return f"{start}+" if not later else f"{start}\u2013{later[0] - 1}"


def stage_label(start_step: int | None, ctx: Context | None = None) -> str:
    """'build-time freeze', 'stage 10\u201319' (its step range) or 'stage at step 10'."""
    if start_step is None:
        return "build-time freeze"
    if ctx is not None:
        return f"stage {ctx.step_range(start_step)}"
    return f"stage at step {start_step}"


def _patterns_text(policy: FreezePolicy, module: str) -> str:
    if policy.is_alias(module):
        patterns = alias_patterns(policy.module_patterns[module])
        return f"alias {module!r} = {list(patterns)}"
    return f"raw pattern {module!r}"


# --- config-only rules ----------------------------------------------------------------


def first_raising_step(spec: SpecRef, max_steps: int | None, dyn_ckpt_covers_step0: bool) -> int | None:
    """The first step at which ``effective_freeze(step, ..., valid_modules)`` meets ``spec``.

    The loop evaluates it after every optimizer step (steps 1..max_steps) for
    the checkpoint metadata, and at step 0 when a dyn_ckpt_window covers it.
    Base specs and stages with ``start_step <= step`` are included.
    """
    start = spec.start_step if spec.start_step is not None else 0
    if dyn_ckpt_covers_step0 and start <= 0:
        return 0
    first = max(start, 1)
    if max_steps is not None and first > max_steps:
        return None
    return first


def _alias_name_for(pattern: str, taken: Sequence[str]) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", pattern) if w]
    name = "_".join(words) or "custom"
    if name[0].isdigit():
        name = "m_" + name
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(p) for p in items) + "]"


def kf301(policy: FreezePolicy, max_steps: int | None, dyn_ckpt_covers_step0: bool,
          ctx: Context | None = None, matcher: Matcher | None = None) -> list[Finding]:
    out = []
    aliases = list(policy.module_patterns)
    for spec in policy.all_specs():
        if policy.is_alias(spec.module):
            continue
        step = first_raising_step(spec, max_steps, dyn_ckpt_covers_step0)
        if step is None:
            continue  # never evaluated in this run; KF306 reports the dead stage
        where = "at build time" if spec.is_base else f"when the stage fires at step {spec.start_step}"
        applied = f"{where} it is applied as a raw fnmatch pattern"
        selection = matcher.select(spec.module) if matcher is not None else None
        if ctx is not None and selection is not None:
            mask = selection.mask
            applied += (f", matching {plural(popcount(mask), 'parameter')} "
                        f"({human_count(ctx.numel(mask))} elements)" if mask else
                        ", matching no built parameter")
            unseen = sorted(selection.covered_unknown | selection.touched_unknown)
            if unseen:
                applied += f" (it may match parameters of the unbuilt {', '.join(map(repr, unseen))})"
        if step == 0:
            when = ("at trainer startup: checkpoint.dyn_ckpt_window covers step 0, so the "
                    "step-0 checkpoint records its freeze metadata before the first step")
            lifecycle = TRAINER_STARTUP
        else:
            when = (f"at step {step}, when the training loop records the checkpoint freeze "
                    "metadata after the optimizer step")
            lifecycle = TRAINING_LOOP
        resume = " A resumed run fails at startup instead." if spec.is_base else ""
        message = (
            f"{spec.key}.module = {spec.module!r} ({stage_label(spec.start_step, ctx)}) is not an "
            f"alias of vlm.module_patterns (aliases: {', '.join(sorted(aliases)) or 'none'}). "
            f"{applied[0].upper() + applied[1:]}, but effective_freeze(step, ..., valid_modules) "
            f"raises ValueError {when}.{resume}")
        alias = _alias_name_for(spec.module, aliases)
        relist = ", ".join(f"{name} = {_toml_list(alias_patterns(p))}"
                           for name, p in policy.module_patterns.items())
        hint = (
            f"define an alias and refer to it: under [vlm.module_patterns] add "
            f"{alias} = {_toml_list([spec.module])} and set module = {json.dumps(alias)}. "
            "Setting [vlm.module_patterns] REPLACES the default aliases, so re-list the ones "
            f"you still use" + (f": {relist}" if relist else ""))
        typo = None if any(ch in spec.module for ch in "*?[") else difflib.get_close_matches(
            spec.module, aliases, n=1, cutoff=0.6)
        if typo:
            hint = f"did you mean the alias {typo[0]!r}? Set module = {json.dumps(typo[0])}. Otherwise, " + hint
        data: dict[str, Any] = {"module": spec.module, "start_step": spec.start_step, "step": step}
        if ctx is not None and selection is not None:
            data.update(ctx.data(selection.mask))
        out.append(error("KF301", message, f"{spec.key}.module", hint, lifecycle, **data))
    return out


def _specs_text(stage: StageRef) -> str:
    return ", ".join(spec.label() for spec in stage.specs) or "no specs"


def kf302(policy: FreezePolicy, fresh_vs_plan: dict[int, int] | None = None,
          ctx: Context | None = None) -> list[Finding]:
    out = []
    for stage in policy.stages:
        if stage.start_step > 0:
            continue
        effect = ""
        data: dict[str, Any] = {"start_step": stage.start_step}
        if ctx is not None and fresh_vs_plan:
            diff = fresh_vs_plan.get(stage.index, 0)
            if diff:
                effect = (f" An uninterrupted run therefore trains with {ctx.describe(diff)} in a "
                          "different state than the plan shows.")
                data.update(ctx.data(diff))
        message = (
            f"{stage.key} has start_step = {stage.start_step} ({_specs_text(stage)}). The training "
            "loop fires a stage only when the step counter, incremented after each optimizer "
            "step, equals start_step (1..train.max_steps), so a fresh run never applies it; a run "
            f"resumed from any checkpoint does (effective_freeze includes every stage with "
            f"start_step <= the resumed step).{effect}")
        hint = ("set start_step = 1 to apply them right after the first optimizer step; moving them into "
                "vlm.freeze instead applies them at build time, but then no later stage can unfreeze them "
                "(the optimizer is built without frozen parameters)")
        out.append(warning("KF302", message, f"{stage.key}.start_step", hint, **data))
    return out


def kf306(policy: FreezePolicy, max_steps: int | None) -> list[Finding]:
    if max_steps is None:
        return []
    out = []
    for stage in policy.stages:
        if stage.start_step <= max_steps:
            continue
        raw = [s.module for s in stage.specs if not policy.is_alias(s.module)]
        latent = (f" (Were it reached, effective_freeze would raise on the non-alias module(s) "
                  f"{', '.join(map(repr, raw))}.)") if raw else ""
        message = (f"{stage.key} starts at step {stage.start_step} but train.max_steps = "
                   f"{max_steps}: the stage ({_specs_text(stage)}) is never reached.{latent}")
        hint = (f"lower start_step to at most {max_steps}, raise train.max_steps, "
                "or delete the stage")
        out.append(warning("KF306", message, f"{stage.key}.start_step", hint,
                           start_step=stage.start_step, max_steps=max_steps))
    return out


def config_rules(policy: FreezePolicy, max_steps: int | None,
                 dyn_ckpt_covers_step0: bool) -> list[Finding]:
    return [*kf301(policy, max_steps, dyn_ckpt_covers_step0), *kf302(policy), *kf306(policy, max_steps)]


# --- parameter rules ------------------------------------------------------------------


def _writer_text(writer: SpecRef | str | None, ctx: Context, *, with_stage: bool = True) -> str:
    if writer is None:
        return "nothing (its default state)"
    if writer == CONSTRUCTION:
        return "the model itself at construction (the parameter is unused in the forward pass)"
    assert isinstance(writer, SpecRef)
    text = f"{writer.key} {writer.label()}"
    return f"{text} ({stage_label(writer.start_step, ctx)})" if with_stage else text


def kf303(a: Analysis, ctx: Context) -> list[Finding]:
    out = []
    for boundary in a.boundaries:
        resumed = a.resume.get(boundary)
        if resumed is None:
            continue
        planned = a.design[boundary]
        diff = planned.state.mask ^ resumed.state.mask
        unknown_diff = [i for i, (p, r) in enumerate(zip(planned.state.unknown, resumed.state.unknown))
                        if p is not None and r is not None and p != r]
        if not diff and not unknown_diff:
            continue
        parts = []
        unfrozen = planned.state.mask & ~resumed.state.mask
        if unfrozen:
            parts.append(f"trainable after the resume but frozen in the plan: {ctx.describe(unfrozen)}")
        refrozen = resumed.state.mask & ~planned.state.mask
        if refrozen:
            parts.append(f"frozen after the resume but trainable in the plan: {ctx.describe(refrozen)}")
        for i in unknown_diff:
            state = "frozen" if resumed.state.unknown[i] else "trainable"
            parts.append(f"{state} after the resume, unlike the plan: the unbuilt component "
                         f"{ctx.unknown_prefixes[i]!r}")
        order = ", ".join(f"{s.label()} [{s.key}]" for s in a.policy.effective_specs(boundary))
        message = (
            f"Resuming from a checkpoint saved at step {boundary} (plan {stage_label(boundary, ctx)}) "
            f"ends with a different frozen set; {'; '.join(parts)}. On resume the trainer re-applies "
            f"effective_freeze({boundary}), which keeps one spec per module key in the order the key "
            f"first appeared, not in time order: {order}.")
        key = "vlm.freeze_schedule"
        hint = ("restate the overlapping aliases in the later stage so each parameter's last write "
                "also comes last in effective_freeze, or give the later spec a new alias name")
        # The largest group of parameters sharing (last writer in the plan, last
        # writer after resume) names the spec whose effect the resume loses.
        groups: dict[tuple[Any, Any], int] = {}
        for plan_writer, part in planned.writers_of(diff):
            for resume_writer, sub in resumed.writers_of(part):
                groups[(plan_writer, resume_writer)] = groups.get((plan_writer, resume_writer), 0) | sub
        if groups:
            (plan_writer, resume_writer), _ = max(groups.items(), key=lambda kv: popcount(kv[1]))
            if isinstance(plan_writer, SpecRef):
                key = f"{plan_writer.key}.module"
                message += (f" The plan's last write, {_writer_text(plan_writer, ctx)}, is overridden "
                            f"on resume by {_writer_text(resume_writer, ctx)}.")
                if isinstance(resume_writer, SpecRef) and plan_writer.start_step is not None:
                    flag = "true" if plan_writer.frozen else "false"
                    hint = (
                        f"in the stage at step {plan_writer.start_step}, add {{module = "
                        f"{json.dumps(resume_writer.module)}, frozen = {flag}}} after its {plan_writer.module!r} "
                        "spec, so effective_freeze ends in the same state as the uninterrupted run; or "
                        "give the later spec a new alias name (same patterns) so effective_freeze "
                        "orders it last")
        out.append(warning("KF303", message, key, hint, step=boundary, **ctx.data(diff)))
    return out


@dataclass
class _Unfreeze:
    """Build-frozen parameters one spec makes trainable in some replay."""

    mask: int = 0
    prefixes: list[str] = field(default_factory=list)
    first_step: int | None = None
    fresh_run: bool = False
    resume: bool = False

    def add(self, step: int, fresh: bool) -> None:
        self.first_step = step if self.first_step is None else min(self.first_step, step)
        if fresh:
            self.fresh_run = True
        else:
            self.resume = True


def kf304(a: Analysis, ctx: Context) -> list[Finding]:
    build = a.build
    culprits: dict[SpecRef | str, _Unfreeze] = {}

    # Parameters the model freezes itself (MoT's unused final norm) get no gradient
    # either way, so unfreezing them later is not a trap worth reporting.
    self_frozen = build.writers.get(CONSTRUCTION, 0)

    def collect(trace: Trace, step: int, fresh: bool) -> None:
        for writer, part in trace.writers_of(build.state.mask & ~trace.state.mask & ~self_frozen):
            entry = culprits.setdefault(writer, _Unfreeze())
            entry.mask |= part
            entry.add(step, fresh)
        for i, prefix in enumerate(ctx.unknown_prefixes):
            writer = trace.unknown_writers[i]
            if build.state.unknown[i] is True and trace.state.unknown[i] is False and writer is not None:
                entry = culprits.setdefault(writer, _Unfreeze())
                if prefix not in entry.prefixes:
                    entry.prefixes.append(prefix)
                entry.add(step, fresh)

    for boundary in a.boundaries:
        if a.max_steps is not None and boundary >= a.max_steps:
            continue  # no optimizer step follows, so nothing is left un-updated
        fresh = a.fresh.get(boundary)
        if fresh is not None and boundary >= 1:
            collect(fresh, boundary, True)
        resumed = a.resume.get(boundary)
        if resumed is not None:
            collect(resumed, boundary, False)

    out = []
    for writer, entry in culprits.items():
        if not isinstance(writer, SpecRef):
            continue
        what = ([ctx.describe(entry.mask)] if entry.mask else []) + [
            f"the unbuilt component {p!r}" for p in entry.prefixes]
        build_writers = [w for w, _ in build.writers_of(entry.mask)]
        build_writers += [build.unknown_writers[ctx.unknown_prefixes.index(p)] for p in entry.prefixes]
        causes = sorted({_writer_text(w, ctx, with_stage=False) for w in build_writers})
        when = (f"from step {entry.first_step} on" if entry.fresh_run
                else f"in a run resumed at step {entry.first_step} or later")
        message = (
            f"{_writer_text(writer, ctx)} makes trainable what the optimizer was built without: "
            f"{' and '.join(what)}, frozen at build time by {'; '.join(causes)}. build_optimizer keeps "
            "only parameters with requires_grad=True after the build-time freeze, so "
            f"{when} these receive gradients but are never updated.")
        spec_writers = sorted({w for w in build_writers if isinstance(w, SpecRef)}, key=lambda w: w.key)
        keys = ", ".join(w.key for w in spec_writers)
        hint = (
            f"keep them trainable at build time: remove or narrow {keys} and freeze them instead "
            f"with a stage {{start_step = 1, specs = [{{module = {json.dumps(spec_writers[0].module)}, "
            "frozen = true}]}. The optimizer is then built with them, the step-1 stage freezes "
            "them right after the first optimizer step (with scheduler.warmup_steps > 0 that "
            "step's LR is 0, so they do not move), and the later unfreeze takes effect")
        data: dict[str, Any] = {"start_step": writer.start_step, "module": writer.module,
                                "step": entry.first_step, "fresh_run": entry.fresh_run,
                                "resume": entry.resume, **ctx.data(entry.mask)}
        if entry.prefixes:
            data["unknown"] = list(entry.prefixes)
        out.append(warning("KF304", message, f"{writer.key}.module", hint, **data))
    return out


def _suggest(module: str, ctx: Context, policy: FreezePolicy) -> str:
    candidates = set(policy.module_patterns)
    for name in ctx.names:
        parts = name.split(".")
        candidates.update(".".join(parts[:k]) for k in range(1, min(len(parts), 4)))
    candidates.discard(module)
    close = difflib.get_close_matches(module.rstrip(".*"), sorted(candidates), n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}? " if close else ""


def kf305(a: Analysis, ctx: Context) -> list[Finding]:
    out = []
    for spec in a.policy.all_specs():
        selection = a.matcher.select(spec.module)
        if selection.mask or selection.may_reach_unknown:
            continue
        message = (f"{spec.key}.module = {spec.module!r} ({stage_label(spec.start_step, ctx)}; "
                   f"{_patterns_text(a.policy, spec.module)}) matches no parameter of this model, "
                   "so the spec does nothing.")
        hint = (_suggest(spec.module, ctx, a.policy)
                + "check the name against `kforge freeze-plan --params`, or delete the spec if the "
                "component has no parameters (e.g. a 'random' vision encoder)")
        out.append(warning("KF305", message, f"{spec.key}.module", hint, module=spec.module,
                           start_step=spec.start_step, count=0, numel=0))
    used = {spec.module for spec in a.policy.all_specs()}
    defaults = module_patterns_for(a.policy.arch or "joint_decoder")
    for alias, patterns in a.policy.module_patterns.items():
        if alias in used or defaults.get(alias) == patterns:
            continue
        selection = a.matcher.select(alias)
        if selection.mask or selection.may_reach_unknown:
            continue
        message = (f"vlm.module_patterns.{alias} = {list(selection.patterns)} matches no parameter of "
                   "this model (the alias is not used by any spec yet).")
        hint = "fix the patterns against `kforge freeze-plan --params`, or delete the alias"
        out.append(warning("KF305", message, f"vlm.module_patterns.{alias}", hint, module=alias,
                           count=0, numel=0))
    return out


def kf307(a: Analysis, ctx: Context) -> list[Finding]:
    if not a.names and not ctx.unknown_prefixes:
        return []

    def all_frozen(trace: Trace) -> bool:
        return (trace.state.mask == a.full_mask
                and all(u is True for u in trace.state.unknown))

    if a.max_steps is not None and a.max_steps < 1:
        return []
    checks: list[tuple[int, Trace, StageRef | None]] = [(1, a.build, None)]
    ordered = [s for s in a.policy.ordered_stages if s.start_step >= 1]
    for boundary in a.boundaries:
        if boundary < 1 or (a.max_steps is not None and boundary >= a.max_steps):
            continue
        trace = a.fresh.get(boundary)
        fired = [s for s in ordered if s.start_step == boundary]
        if trace is not None and fired:
            checks.append((boundary + 1, trace, fired[-1]))
    for step, trace, stage in checks:
        if not all_frozen(trace):
            continue
        total = ctx.size(a.full_mask)
        if stage is None:
            cause = "the build-time freeze (construction + vlm.freeze)"
            key = "vlm.freeze"
        else:
            cause = f"{stage.key} ({stage_label(stage.start_step, ctx)}: {_specs_text(stage)})"
            key = stage.key
        message = (f"No trainable parameter from step {step} on: after {cause} all {total} are "
                   f"frozen, so the backward pass of step {step} fails (the loss does not require "
                   "grad).")
        hint = "leave at least one module trainable, e.g. {module = \"adapter\", frozen = false}"
        return [error("KF307", message, key, hint, TRAINING_LOOP, step=step,
                      start_step=None if stage is None else stage.start_step)]
    return []


def kf308(a: Analysis, ctx: Context) -> list[Finding]:
    out = []
    for effect in a.stage_effects:
        stage = effect.stage
        if a.max_steps is not None and stage.start_step > a.max_steps:
            continue  # never reached: KF306 already says so
        if None in effect.before.unknown or None in effect.after.unknown:
            continue  # cannot see the unbuilt part: make no claim
        if effect.before != effect.after:
            continue
        touched = 0
        for spec in stage.specs:
            touched |= a.matcher.select(spec.module).mask
        already = (f": its specs select {ctx.size(touched)}, all already in that state"
                   if touched else ": its specs select no parameter")
        message = (f"{stage.key} ({stage_label(stage.start_step, ctx)}: {_specs_text(stage)}) changes "
                   f"nothing in the plan{already}.")
        hint = ("delete the stage, or fix its module names / frozen flags if it was meant to "
                "change something")
        out.append(warning("KF308", message, stage.key, hint, start_step=stage.start_step,
                           **ctx.data(touched)))
    return out


def parameter_rules(a: Analysis, ctx: Context) -> list[Finding]:
    return [*kf303(a, ctx), *kf304(a, ctx), *kf305(a, ctx), *kf307(a, ctx), *kf308(a, ctx)]
