"""The freeze rules (KF301-KF308): what the trainer's freeze machinery does with the schedule.

KF301, KF302 and KF306 need only the config; the others compare replays of the
freeze plan over the model's parameter list (``kforge_cli.freeze``), which the
manifest gives without torch. Every message names the stage, the alias and the
parameters affected; every hint states a fix that works in the reference trainer.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from kforge_cli.config.vlm import VLMConfig, module_patterns_for
from kforge_cli.findings import Finding, close_matches, shown
from kforge_cli.freeze.describe import (
    Context,
    alias_name_for,
    application_step,
    applied_in_fresh_run,
    first_raising_step,
    patterns_text,
    specs_text,
    stage_label,
    suggest_module,
    toml_list,
    writer_text,
)
from kforge_cli.freeze.matching import Matcher, PatternFailure, alias_patterns, popcount
from kforge_cli.freeze.simulate import (
    CONSTRUCTION,
    Analysis,
    FreezePolicy,
    SpecRef,
    StageRef,
    Trace,
)
from kforge_cli.freeze.units import human_count, listed, plural
from kforge_cli.manifest.result import CHECKPOINT_WRAPPED
from kforge_cli.records import record
from kforge_cli.rules.loading import WRONG_TYPE
from kforge_cli.rules.rule import (
    BUILD,
    ERROR,
    LOOP,
    NEEDS_PLAN,
    STARTUP,
    WARNING,
    Rule,
    Subject,
)

FREEZE_UNKNOWN_ALIAS = Rule(
    "KF301", "freeze-unknown-alias", ERROR,
    "A freeze spec's module is not an alias of vlm.module_patterns; the training loop's effective_freeze raises "
    "at the first step boundary that reaches it.", 'freeze = [{module = "transformer.layers.0.*"}]')
STAGE_AT_OR_BEFORE_ZERO = Rule(
    "KF302", "stage-at-or-before-zero", WARNING,
    "A freeze stage with start_step <= 0: a fresh run never fires it, a resumed run applies it.",
    "freeze_schedule = [{start_step = 0, specs = [...]}]")
RESUME_DIVERGES = Rule(
    "KF303", "resume-diverges", WARNING,
    "Resuming at some step yields a different trainable set than the uninterrupted run.",
    "overlapping aliases transformer and cross_attention in successive stages")
UNFROZEN_NEVER_UPDATED = Rule(
    "KF304", "unfrozen-never-updated", WARNING,
    "A parameter frozen at build time is unfrozen by a later stage: the optimizer was built without it, so it "
    "gets gradients but is never updated.", "freeze transformer at build, unfreeze cross_attention at step 10")
FREEZE_MATCHES_NOTHING = Rule(
    "KF305", "freeze-matches-nothing", WARNING,
    "A freeze spec or alias the user wrote matches no parameter.", 'module = "vision_encoder" with the random encoder')
STAGE_NEVER_REACHED = Rule(
    "KF306", "stage-never-reached", WARNING,
    "A freeze stage starts after train.max_steps.", "start_step = 500 with max_steps = 100")
NOTHING_TRAINABLE = Rule(
    "KF307", "nothing-trainable", ERROR,
    "No parameter is trainable at some step: the first backward fails.",
    'freeze = [{module = "transformer"}, {module = "adapter"}]')
STAGE_CHANGES_NOTHING = Rule(
    "KF308", "stage-changes-nothing", WARNING,
    "A freeze stage leaves the frozen set unchanged.", "freezing an already frozen alias")
SCHEDULE_IGNORED_UNDER_COMPILE = Rule(
    "KF309", "schedule-ignored-under-compile", WARNING,
    "With train.compile_model = true the trainer applies freeze stages (and the re-freeze on resume) to the "
    "torch.compile wrapper, whose parameter names start with '_orig_mod.', so alias patterns match nothing "
    "there and the stages change nothing.",
    'freeze_schedule = [{start_step = 10, specs = [{module = "transformer", frozen = false}]}], '
    "compile_model = true")

CHECKPOINT_WRAPPER_HIDES = Rule(
    "KF310", "checkpoint-wrapper-hides-parameters", WARNING,
    "A freeze pattern spells a parameter path through a module that activation checkpointing wraps: on the "
    "trainer's model the name reads '<module>._checkpoint_wrapped_module.<rest>', so the pattern misses it.",
    'freeze = [{module = "transformer.layers.0.attention.*"}] with activation_checkpointing = "full"')

# torch.compile's OptimizedModule holds the model as ``_orig_mod``: its parameter names get this prefix.
COMPILED_PREFIX = "_orig_mod."

# What every freeze check reads: a rejected one of these makes its findings a consequence, not a cause.
FREEZE_READS = ("vlm.arch", "vlm.freeze", "vlm.freeze_schedule", "vlm.module_patterns", "train.max_steps",
                "checkpoint.dyn_ckpt_window")


@record
class FreezeInputs:
    """The freeze policy and its context, from the plan when there is one, else from the config."""

    policy: FreezePolicy
    max_steps: int | None
    dyn_ckpt_covers_step0: bool
    analysis: Analysis | None = None
    ctx: Context | None = None
    matcher: Matcher | None = None
    # Base specs the user wrote (a default vlm.freeze is nobody's mistake).
    written_base: bool = True
    fresh_vs_plan: dict[int, int] = field(default_factory=dict)


def freeze_inputs(s: Subject) -> FreezeInputs | None:
    plan = s.plan
    if plan is not None:
        if plan.arch is None:
            return None
        analysis = plan.analysis
        return FreezeInputs(analysis.policy, plan.max_steps, plan.dyn_ckpt_covers_step0, analysis, plan.context(),
                            analysis.matcher, written_base=_base_written(s), fresh_vs_plan=plan.fresh_vs_plan())
    job = s.job
    vlm = getattr(job, "vlm", None)
    if not isinstance(vlm, VLMConfig):
        return None
    max_steps = job.train.max_steps if isinstance(job.train.max_steps, int) else None
    return FreezeInputs(FreezePolicy.from_vlm(vlm), max_steps, job.checkpoint.covers_step0(),
                        written_base=_base_written(s))


def _base_written(s: Subject) -> bool:
    """Whether vlm.freeze comes from the file or an override (True when unknown, e.g. a plan alone)."""
    if s.job is None:
        return True
    table = s.data.get("vlm") if isinstance(s.data, Mapping) else None
    return isinstance(table, Mapping) and "freeze" in table


def unknown_alias_findings(policy: FreezePolicy, max_steps: int | None, dyn_ckpt_covers_step0: bool,
          ctx: Context | None = None, matcher: Matcher | None = None) -> list[Finding]:
    out = []
    aliases = list(policy.module_patterns)
    for spec in policy.all_specs():
        if policy.is_alias(spec.module):
            continue
        step = first_raising_step(spec, max_steps, dyn_ckpt_covers_step0)
        if step is None:
            continue  # never evaluated in this run; KF306 reports the dead stage
        if not isinstance(spec.module, str) and applied_in_fresh_run(spec, max_steps):
            continue  # applying it raises TypeError first (at build, or in the stage's hook)
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
            lifecycle = STARTUP
        else:
            when = (f"at step {step}, when the training loop records the checkpoint freeze "
                    "metadata after the optimizer step")
            lifecycle = LOOP
        resume = " A resumed run fails at startup instead." if spec.is_base else ""
        message = (
            f"{spec.key}.module = {shown(spec.module)} ({stage_label(spec.start_step, ctx)}) is not an "
            f"alias of vlm.module_patterns (aliases: {listed(sorted(aliases), ', ', 8) or 'none'}). "
            f"{applied[0].upper() + applied[1:]}, but effective_freeze(step, ..., valid_modules) "
            f"raises ValueError {when}.{resume}")
        alias = alias_name_for(spec.module if isinstance(spec.module, str) else "custom", aliases)
        relist = ", ".join(f"{name} = {toml_list(alias_patterns(p))}"
                           for name, p in itertools.islice(policy.module_patterns.items(), 8))
        if len(policy.module_patterns) > 8:
            relist += f", and the other {len(policy.module_patterns) - 8:,} aliases"
        hint = (
            f"define an alias and refer to it: under [vlm.module_patterns] add "
            f"{alias} = {toml_list([spec.module])} and set module = {json.dumps(alias)}. "
            "Setting [vlm.module_patterns] REPLACES the default aliases, so re-list the ones "
            f"you still use" + (f": {relist}" if relist else ""))
        typo = None if not isinstance(spec.module, str) or any(ch in spec.module for ch in "*?[") else (
            close_matches(spec.module, aliases, n=1, cutoff=0.6))
        if typo:
            hint = f"did you mean the alias {typo[0]!r}? Set module = {json.dumps(typo[0])}. Otherwise, " + hint
        data: dict[str, Any] = {"module": spec.module, "start_step": spec.start_step, "step": step}
        if ctx is not None and selection is not None:
            data.update(ctx.data(selection.mask))
        out.append(FREEZE_UNKNOWN_ALIAS.finding(message, f"{spec.key}.module", hint, stage=lifecycle, **data))
    return out


def stage_zero_findings(policy: FreezePolicy, fresh_vs_plan: dict[int, int] | None = None,
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
            f"{stage.key} has start_step = {stage.start_step} ({specs_text(stage)}). The training "
            "loop fires a stage only when the step counter, incremented after each optimizer "
            "step, equals start_step (1..train.max_steps), so a fresh run never applies it; a run "
            f"resumed from any checkpoint does (effective_freeze includes every stage with "
            f"start_step <= the resumed step).{effect}")
        hint = ("set start_step = 1 to apply them right after the first optimizer step; moving them into "
                "vlm.freeze instead applies them at build time, but then no later stage can unfreeze them "
                "(the optimizer is built without frozen parameters)")
        out.append(STAGE_AT_OR_BEFORE_ZERO.finding(message, f"{stage.key}.start_step", hint, **data))
    return out


def unreached_stage_findings(policy: FreezePolicy, max_steps: int | None) -> list[Finding]:
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
                   f"{max_steps}: the stage ({specs_text(stage)}) is never reached.{latent}")
        hint = (f"lower start_step to at most {max_steps}, raise train.max_steps, "
                "or delete the stage")
        out.append(STAGE_NEVER_REACHED.finding(message, f"{stage.key}.start_step", hint,
                           start_step=stage.start_step, max_steps=max_steps))
    return out


def resume_divergence_findings(a: Analysis, ctx: Context) -> list[Finding]:
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
        order = listed([f"{s.label()} [{s.key}]" for s in a.policy.effective_specs(boundary)], ", ",
                       limit=12, noun="more specs")
        message = (
            f"Resuming from a checkpoint saved at step {boundary} (plan {stage_label(boundary, ctx)}) "
            f"ends with a different frozen set; {listed(parts)}. On resume the trainer re-applies "
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
                message += (f" The plan's last write, {writer_text(plan_writer, ctx)}, is overridden "
                            f"on resume by {writer_text(resume_writer, ctx)}.")
                if isinstance(resume_writer, SpecRef) and plan_writer.start_step is not None:
                    flag = "true" if plan_writer.frozen else "false"
                    hint = (
                        f"in the stage at step {plan_writer.start_step}, add {{module = "
                        f"{json.dumps(resume_writer.module)}, frozen = {flag}}} after its {plan_writer.module!r} "
                        "spec, so effective_freeze ends in the same state as the uninterrupted run; or "
                        "give the later spec a new alias name (same patterns) so effective_freeze "
                        "orders it last")
        out.append(RESUME_DIVERGES.finding(message, key, hint, step=boundary, **ctx.data(diff)))
    return out


@record
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


def never_updated_findings(a: Analysis, ctx: Context) -> list[Finding]:
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
            owner = trace.unknown_writers[i]
            if build.state.unknown[i] is True and trace.state.unknown[i] is False and owner is not None:
                entry = culprits.setdefault(owner, _Unfreeze())
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
        build_writers: list[SpecRef | str | None] = [w for w, _ in build.writers_of(entry.mask)]
        build_writers += [build.unknown_writers[ctx.unknown_prefixes.index(p)] for p in entry.prefixes]
        causes = sorted({writer_text(w, ctx, with_stage=False) for w in build_writers})
        when = (f"from step {entry.first_step} on" if entry.fresh_run
                else f"in a run resumed at step {entry.first_step} or later")
        message = (
            f"{writer_text(writer, ctx)} makes trainable what the optimizer was built without: "
            f"{' and '.join(what)}, frozen at build time by {listed(causes)}. build_optimizer keeps "
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
        out.append(UNFROZEN_NEVER_UPDATED.finding(message, f"{writer.key}.module", hint, **data))
    return out


def matches_nothing_findings(a: Analysis, ctx: Context, *, include_base: bool = True) -> list[Finding]:
    out = []
    for spec in a.policy.all_specs():
        if spec.is_base and not include_base:
            continue  # the default vlm.freeze: a parameter-free encoder is nobody's mistake
        selection = a.matcher.select(spec.module)
        if selection.mask or selection.may_reach_unknown or selection.failure is not None:
            continue  # a failing application is KF102's
        message = (f"{spec.key}.module = {spec.module!r} ({stage_label(spec.start_step, ctx)}; "
                   f"{patterns_text(a.policy, spec.module)}) matches no parameter of this model, "
                   "so the spec does nothing.")
        hint = (suggest_module(spec.module, ctx, a.policy)
                + "check the name against `kforge freeze-plan --params`, or delete the spec if the "
                "component has no parameters (e.g. a 'random' vision encoder)")
        out.append(FREEZE_MATCHES_NOTHING.finding(message, f"{spec.key}.module", hint, module=spec.module,
                           start_step=spec.start_step, count=0, numel=0))
    used = {spec.module for spec in a.policy.all_specs()}
    defaults = module_patterns_for(a.policy.arch or "joint_decoder")
    # A default alias left as it was is nobody's mistake, even when it matches nothing.
    for alias, patterns in a.policy.module_patterns.items():
        if alias in used or defaults.get(alias) == patterns:
            continue
        selection = a.matcher.select(alias)
        if selection.mask or selection.may_reach_unknown or selection.failure is not None:
            continue
        message = (f"vlm.module_patterns.{alias} = {shown(patterns)} matches no parameter of "
                   "this model (the alias is not used by any spec yet).")
        hint = "fix the patterns against `kforge freeze-plan --params`, or delete the alias"
        out.append(FREEZE_MATCHES_NOTHING.finding(message, f"vlm.module_patterns.{alias}", hint, module=alias,
                           count=0, numel=0))
    return out


def nothing_trainable_findings(a: Analysis, ctx: Context) -> list[Finding]:
    if not a.names and not ctx.unknown_prefixes:
        return []

    def all_frozen(trace: Trace) -> bool:
        return (trace.state.mask == a.full_mask
                and all(u is True for u in trace.state.unknown))

    if a.max_steps is not None and a.max_steps < 1:
        return []
    checks: list[tuple[int, Trace, StageRef | None]] = [(1, a.build, None)]
    last_starting: dict[int, StageRef] = {}
    for ordered in a.policy.ordered_stages:
        if ordered.start_step >= 1:
            last_starting[ordered.start_step] = ordered
    for boundary in a.boundaries:
        if boundary < 1 or (a.max_steps is not None and boundary >= a.max_steps):
            continue
        trace = a.fresh.get(boundary)
        fired = last_starting.get(boundary)
        if trace is not None and fired is not None:
            checks.append((boundary + 1, trace, fired))
    for step, trace, stage in checks:
        if not all_frozen(trace):
            continue
        total = ctx.size(a.full_mask)
        if stage is None:
            cause = "the build-time freeze (construction + vlm.freeze)"
            key = "vlm.freeze"
        else:
            cause = f"{stage.key} ({stage_label(stage.start_step, ctx)}: {specs_text(stage)})"
            key = stage.key
        message = (f"No trainable parameter from step {step} on: after {cause} all {total} are "
                   f"frozen, so the backward pass of step {step} fails (the loss does not require "
                   "grad).")
        hint = "leave at least one module trainable, e.g. {module = \"adapter\", frozen = false}"
        return [NOTHING_TRAINABLE.finding(message, key, hint, stage=LOOP, step=step,
                      start_step=None if stage is None else stage.start_step)]
    return []


def no_change_findings(a: Analysis, ctx: Context) -> list[Finding]:
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
        message = (f"{stage.key} ({stage_label(stage.start_step, ctx)}: {specs_text(stage)}) changes "
                   f"nothing in the plan{already}.")
        hint = ("delete the stage, or fix its module names / frozen flags if it was meant to "
                "change something")
        out.append(STAGE_CHANGES_NOTHING.finding(message, stage.key, hint, start_step=stage.start_step,
                           **ctx.data(touched)))
    return out


@FREEZE_UNKNOWN_ALIAS.check(stage=LOOP, reads=FREEZE_READS)
def spec_modules_are_aliases(s: Subject) -> list[Finding]:
    """effective_freeze accepts only aliases of vlm.module_patterns."""
    inputs = freeze_inputs(s)
    if inputs is None:
        return []
    return unknown_alias_findings(inputs.policy, inputs.max_steps, inputs.dyn_ckpt_covers_step0, inputs.ctx,
                                  inputs.matcher)


@STAGE_AT_OR_BEFORE_ZERO.check(stage=None, reads=FREEZE_READS)
def stages_start_after_zero(s: Subject) -> list[Finding]:
    """A stage at step <= 0 fires on resume only."""
    inputs = freeze_inputs(s)
    if inputs is None:
        return []
    return stage_zero_findings(inputs.policy, inputs.fresh_vs_plan, inputs.ctx)


@STAGE_NEVER_REACHED.check(stage=None, reads=FREEZE_READS)
def stages_within_run(s: Subject) -> list[Finding]:
    """A stage after train.max_steps never fires."""
    inputs = freeze_inputs(s)
    if inputs is None:
        return []
    return unreached_stage_findings(inputs.policy, inputs.max_steps)


def _with_plan(s: Subject) -> tuple[Analysis, Context, FreezeInputs] | None:
    inputs = freeze_inputs(s)
    if inputs is None or inputs.analysis is None or inputs.ctx is None:
        return None
    return inputs.analysis, inputs.ctx, inputs


@RESUME_DIVERGES.check(stage=None, reads=FREEZE_READS, needs=(NEEDS_PLAN,))
def resume_matches_uninterrupted_run(s: Subject) -> list[Finding]:
    """On resume, effective_freeze's per-alias order can end in another frozen set."""
    found = _with_plan(s)
    return resume_divergence_findings(found[0], found[1]) if found else []


@UNFROZEN_NEVER_UPDATED.check(stage=None, reads=FREEZE_READS, needs=(NEEDS_PLAN,))
def unfrozen_parameters_are_optimized(s: Subject) -> list[Finding]:
    """The optimizer is built once, without the parameters frozen at build time."""
    found = _with_plan(s)
    return never_updated_findings(found[0], found[1]) if found else []


@FREEZE_MATCHES_NOTHING.check(stage=None, reads=FREEZE_READS, needs=(NEEDS_PLAN,))
def specs_match_parameters(s: Subject) -> list[Finding]:
    """A spec or alias the user wrote that selects no parameter."""
    found = _with_plan(s)
    if not found:
        return []
    return matches_nothing_findings(found[0], found[1], include_base=found[2].written_base)


@NOTHING_TRAINABLE.check(stage=LOOP, reads=FREEZE_READS, needs=(NEEDS_PLAN,))
def something_trainable(s: Subject) -> list[Finding]:
    """Every step needs a trainable parameter, or backward fails."""
    found = _with_plan(s)
    return nothing_trainable_findings(found[0], found[1]) if found else []


@STAGE_CHANGES_NOTHING.check(stage=None, reads=FREEZE_READS, needs=(NEEDS_PLAN,))
def stages_change_something(s: Subject) -> list[Finding]:
    """A stage whose specs leave the frozen set as it was."""
    found = _with_plan(s)
    return no_change_findings(found[0], found[1]) if found else []


def pattern_failure_findings(a: Analysis) -> list[Finding]:
    """The first freeze spec a fresh run applies whose patterns make fnmatch raise (the run stops there)."""
    applied = [(spec, 0) for spec in a.policy.base]
    applied += [(spec, step) for stage in a.policy.ordered_stages for spec in stage.specs
                if (step := application_step(spec, a.max_steps)) is not None]
    for spec, step in applied:
        failure = a.matcher.select(spec.module).failure
        if failure is not None:
            return [_pattern_failure(a.policy, spec, step, failure)]
    return []


def _pattern_failure(policy: FreezePolicy, spec: SpecRef, step: int, failure: PatternFailure) -> Finding:
    where = ("the build-time freeze applies it at model build" if step == 0 else
             f"the training loop's FreezeStage hook applies it at step {step}")
    on = f" on {failure.parameter!r}" if failure.parameter else ""
    if not policy.is_alias(spec.module):
        message = (f"{spec.key}.module = {shown(spec.module)} is not a string. The loader keeps it as is; "
                   f"{where} as a raw fnmatch pattern, and fnmatch raises TypeError ({failure.message}){on}.")
        hint = 'write module = "<alias>", naming an alias of vlm.module_patterns (e.g. module = "transformer")'
        key = f"{spec.key}.module"
    else:
        alias = spec.module
        value = policy.module_patterns[alias]
        patterns = list(alias_patterns(value))
        if not patterns and isinstance(value, (list, tuple)):
            # Nothing usable is left to show: quote what was written.
            patterns = [entry if isinstance(entry, str) else shown(entry) for entry in value]
        if not patterns:  # a scalar: the arch's default patterns for the alias, if it has them
            patterns = module_patterns_for(policy.arch or "joint_decoder").get(alias) or ["<module>", "<module>.*"]
        intended = toml_list(patterns)
        if failure.entry is None:
            message = (f"vlm.module_patterns.{alias} = {shown(value)} is not a list of patterns: {spec.key} "
                       f"({spec.label()}) uses it; {where}, and freeze_params calls list() on the value, which "
                       f"raises TypeError ({failure.message}).")
            key = f"vlm.module_patterns.{alias}"
        else:
            message = (f"vlm.module_patterns.{alias}[{failure.entry}] = {shown(failure.value)} is not a string. "
                       f"{spec.key} ({spec.label()}) uses the alias, {where}, and freeze_params tests each "
                       "parameter name against the alias's entries in order: fnmatch raises TypeError "
                       f"({failure.message}){on}, which no earlier entry matches.")
            key = f"vlm.module_patterns.{alias}[{failure.entry}]"
        hint = (f"write the alias as a list of patterns, e.g. {alias} = {intended}" if failure.entry is None else
                f"write every entry as a quoted pattern, e.g. {alias} = {intended}")
    return WRONG_TYPE.finding(message, key, hint, stage=BUILD if step == 0 else LOOP, step=step,
                              module=spec.module if isinstance(spec.module, str) else shown(spec.module))


def compiled_stage_findings(a: Analysis, ctx: Context) -> list[Finding]:
    """Stages whose specs select fewer parameters under the compiled names than the plan shows."""
    if not a.policy.has_schedule:
        return []
    compiled = Matcher([COMPILED_PREFIX + name for name in a.names], a.policy.module_patterns)
    affected: list[str] = []
    lost_all = 0
    example: str | None = None
    for stage in a.policy.ordered_stages:
        lost = 0
        for spec in stage.specs:
            missed = a.matcher.select(spec.module).mask & ~compiled.select(spec.module).mask
            if missed and example is None and policy_alias(a.policy, spec.module):
                example = spec.module
            lost |= missed
        if lost:
            lost_all |= lost
            when = (f"step {stage.start_step}" if 1 <= stage.start_step else
                    f"step {stage.start_step}, applied on resume only")
            affected.append(f"{stage.key} ({when}: {specs_text(stage)})")
    if not affected:
        return []
    message = (
        "train.compile_model = true: the training loop's FreezeStage hook and the re-freeze after a resume call "
        "apply_freeze_specs on the torch.compile wrapper, whose parameter names start with "
        f"{COMPILED_PREFIX!r}, so patterns without a leading '*' match nothing there. In a real run "
        f"{listed(affected, noun='more stages')} therefore leave{'s' if len(affected) == 1 else ''} "
        f"{ctx.describe(lost_all)} as "
        "the build-time freeze set them (that freeze runs before compiling and works), and a resumed run keeps "
        "only the build-time freeze. The freeze plan and the other freeze findings describe the uncompiled "
        "module, as the recorded reference runs do.")
    hint = "set train.compile_model = false"
    if example is not None:
        patterns = list(alias_patterns(a.policy.module_patterns[example]))
        extended = patterns + [COMPILED_PREFIX + p for p in patterns if not p.startswith("*")]
        hint += (f", or add the compiled names to each alias the stages use, e.g. {example} = "
                 f"{toml_list(extended)}")
    return [SCHEDULE_IGNORED_UNDER_COMPILE.finding(message, "vlm.freeze_schedule", hint, **ctx.data(lost_all))]


def checkpoint_wrapper_findings(a: Analysis, ctx: Context, runtime_name: Any, mode: str,
                                compiled: bool) -> list[Finding]:
    """Specs selecting parameters by state-dict names that activation checkpointing renames at run time."""
    runtime = Matcher([runtime_name(name) for name in a.names], a.policy.module_patterns)
    out = []
    for spec in a.policy.all_specs():
        step = application_step(spec, a.max_steps)
        if step is None or (step > 0 and compiled):
            continue  # never applied, or applied to compiled names (KF309)
        missed = a.matcher.select(spec.module).mask & ~runtime.select(spec.module).mask
        if not missed:
            continue
        example = a.names[(missed & -missed).bit_length() - 1]
        when = "the build-time freeze" if step == 0 else f"the stage hook at step {step}"
        message = (
            f"{spec.key}.module = {spec.module!r} ({patterns_text(a.policy, spec.module)}) selects "
            f"{ctx.describe(missed)} by their state-dict names, but activation_checkpointing = {mode!r} wraps "
            f"their module in a CheckpointWrapper before {when} applies it: the trainer sees names like "
            f"{runtime_name(example)!r}, so the spec leaves them as they were. The freeze plan lists the "
            "state-dict names.")
        hint = ("let the pattern cross the wrapper with a '*' (an alias ending in '.*' does), e.g. "
                f"{_across_wrapper(runtime_name(example), a.matcher.select(spec.module).patterns)!r}, "
                'or set train.activation_checkpointing = "none"')
        out.append(CHECKPOINT_WRAPPER_HIDES.finding(message, f"{spec.key}.module", hint, step=step,
                                                    **ctx.data(missed)))
    return out


def _across_wrapper(runtime: str, patterns: tuple[str, ...]) -> str:
    """A pattern like the spec's that also matches the wrapped name: '*' where the wrapper sits."""
    wrapped, _, rest = runtime.partition(f".{CHECKPOINT_WRAPPED}.")
    for pattern in patterns:
        if pattern.startswith(wrapped + "."):
            return f"{wrapped}.*{pattern[len(wrapped) + 1:]}"
    return f"{wrapped}.*{rest.split('.', 1)[0]}.*"


def policy_alias(policy: FreezePolicy, module: Any) -> bool:
    return isinstance(module, str) and policy.is_alias(module)


@WRONG_TYPE.check(stage=LOOP, reads=FREEZE_READS, needs=(NEEDS_PLAN,))
def freeze_patterns_are_strings(s: Subject) -> list[Finding]:
    """Applying a freeze spec whose patterns are not strings raises in fnmatch (at build, or in a stage)."""
    found = _with_plan(s)
    return pattern_failure_findings(found[0]) if found else []


@SCHEDULE_IGNORED_UNDER_COMPILE.check(stage=None, reads=(*FREEZE_READS, "train.compile_model"), needs=(NEEDS_PLAN,))
def stages_reach_compiled_model(s: Subject) -> list[Finding]:
    """Freeze stages act on the torch.compile wrapper, whose parameter names carry '_orig_mod.'."""
    if s.job is None or s.job.train.compile_model is not True:
        return []
    found = _with_plan(s)
    return compiled_stage_findings(found[0], found[1]) if found else []


@CHECKPOINT_WRAPPER_HIDES.check(stage=None, reads=(*FREEZE_READS, "train.activation_checkpointing",
                                                  "train.compile_model"), needs=(NEEDS_PLAN,))
def specs_reach_checkpointed_modules(s: Subject) -> list[Finding]:
    """Activation checkpointing renames the parameters of the modules it wraps before any freeze."""
    wrapped = getattr(s.manifest, "checkpoint_wrapped", None)
    found = _with_plan(s)
    if not wrapped or not found or s.job is None:
        return []
    mode = s.job.train.activation_checkpointing
    return checkpoint_wrapper_findings(found[0], found[1], s.manifest.renamer(), str(mode),
                                       s.job.train.compile_model is True)


def config_findings(vlm: Any, max_steps: int | None, *, dyn_ckpt_covers_step0: bool = False) -> list[Finding]:
    """KF301, KF302 and KF306 from the vlm section alone (no parameter list)."""
    if vlm is None:
        return []
    policy = FreezePolicy.from_vlm(vlm)
    return [*unknown_alias_findings(policy, max_steps, dyn_ckpt_covers_step0), *stage_zero_findings(policy),
            *unreached_stage_findings(policy, max_steps)]


def plan_findings(plan: Any) -> list[Finding]:
    """Every freeze rule's findings for a plan on its own (no config file around it)."""
    subject = Subject(job=None, plan=plan)
    out: list[Finding] = []
    for rule in (FREEZE_UNKNOWN_ALIAS, STAGE_AT_OR_BEFORE_ZERO, RESUME_DIVERGES, UNFROZEN_NEVER_UPDATED,
                 FREEZE_MATCHES_NOTHING, STAGE_NEVER_REACHED, NOTHING_TRAINABLE, STAGE_CHANGES_NOTHING):
        for check in rule.checks:
            out.extend(check.run(subject))
    return out
