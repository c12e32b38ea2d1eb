"""The engine: runs every rule on a job file in the order the trainer meets them.

One engine serves every command, so validate, explain, freeze-plan and fit
report the same findings for the same file and settings. It

- loads the file (the loader reports what the reference's loader rejects),
- runs the checks stage by stage (validation, model build, start-up, training
  loop, checkpoint load, then the warnings), building on demand what checks
  need: the parameter manifest, the freeze plan, the checkpoint,
- skips a check whose input keys were already rejected (its finding would be a
  consequence, not a cause), and folds findings about a key a typo meant into
  the typo's finding,
- applies ``[tool.kforge]`` settings, suppression comments and select/ignore,
- orders what is left root causes first.

An internal error while checking one file becomes that file's finding, never
the end of the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import field
from typing import Any

from kforge_cli.config.loader import (
    LoadResult,
    Override,
    load_job,
    load_job_text,
    locate,
)
from kforge_cli.findings import ERROR, INFO, WARNING, Finding, unique
from kforge_cli.lint.settings import (
    RuleSelection,
    SelectionLayer,
    Settings,
    SettingsFinder,
)
from kforge_cli.records import record
from kforge_cli.rules.rule import (
    BUILD,
    CHECKPOINT,
    LOOP,
    NEEDS_CHECKPOINT,
    NEEDS_MANIFEST,
    NEEDS_MEMORY,
    NEEDS_PLAN,
    NEEDS_WORLD_SIZE,
    STAGES,
    Check,
    KeyIndex,
    Subject,
    blocked,
    touches,
)

_SEVERITY_RANK = {ERROR: 0, WARNING: 1, INFO: 2}
_STAGE_RANK = {stage: i for i, stage in enumerate(STAGES)}

# Where the parameter list comes from: the pure-Python manifest, or the model
# built on the meta device (torch), which freeze-plan prefers when installed.
MANIFEST = "manifest"
META = "meta"


@record(frozen=True)
class Options:
    """How to check: what the command line asked, before per-file settings are layered on."""

    world_size: int | None = None
    overrides: Sequence[str | Override] = ()  # strings are parsed by the loader (kforge fit's candidates)
    model_ckpt: str | None = None
    model_source: str = MANIFEST
    gpu: str | None = None  # a GPU name; with it (or gpu in [tool.kforge]) the memory rules run
    gpu_memory: float | None = None  # an explicit capacity in GiB instead of a GPU name
    predict_memory: bool = False  # predict even without a GPU (kforge fit: a default GPU is assumed)
    selection: SelectionLayer = field(default_factory=SelectionLayer)  # --select / --ignore
    strict: bool | None = None  # --strict / --no-strict; None: the file's settings decide


@record
class CheckpointView:
    """A checkpoint read for this job: what was read, how it fits the model, step-0 state."""

    path: str
    manifest: Any  # checkpoint.CheckpointManifest
    fit: Any = None  # CheckpointFit, or None when the model could not be built
    frozen_at_step0: set[str] = field(default_factory=set)


@record
class FileReport:
    path: str
    load: LoadResult
    findings: list[Finding] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)
    subject: Subject | None = None
    settings: Settings = field(default_factory=Settings)
    # Judged strictly: --strict, or strict = true in the file's settings.
    strict: bool = False
    model_error: Any = None  # the ModelBuildError that stopped the model build, if any
    internal_error: BaseException | None = None  # a bug in kforge hit while checking this file

    # A summary of omitted findings counts for every finding it stands for.
    @property
    def errors(self) -> int:
        return sum(f.data.get("omitted", 1) for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(f.data.get("omitted", 1) for f in self.findings if f.severity == WARNING)

    @property
    def valid(self) -> bool:
        return self.errors == 0 and (not self.strict or self.warnings == 0)

    @property
    def plan(self) -> Any:
        return self.subject.plan if self.subject is not None else None

    @property
    def model(self) -> Any:
        return self.subject.manifest if self.subject is not None else None


def check_files(paths: Sequence[str], options: Options = Options(), *,
                finder: SettingsFinder | None = None) -> list[FileReport]:
    finder = finder or SettingsFinder()
    return [check_file(path, options, finder=finder) for path in paths]


def check_file(path: str, options: Options = Options(), *, text: str | None = None,
               finder: SettingsFinder | None = None) -> FileReport:
    """Check one file (``text`` given: its contents, e.g. from stdin, with ``path`` naming it)."""
    finder = finder or SettingsFinder()
    settings = finder.for_config(path)
    try:
        report = _check(path, options, settings, text)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as bug:
        report = _internal_error(path, bug)
    return report


def _internal_error(path: str, bug: BaseException) -> FileReport:
    from kforge_cli.rules.loading import INTERNAL_ERROR

    load = LoadResult(path=path, source=None, job=None)
    finding = INTERNAL_ERROR.finding(
        f"kforge failed while checking this file ({type(bug).__name__}: {str(bug)[:200]}); this is a bug in "
        "kforge, not in the file", None, "rerun with --traceback and report it; the other files were checked")
    return FileReport(path, load, [finding], internal_error=bug)


def unreadable_report(path: str, reason: str, hint: str | None = None) -> FileReport:
    """The report of an input that could not even be read (e.g. standard input that is not UTF-8)."""
    from kforge_cli.rules.loading import UNREADABLE_FILE
    from kforge_cli.rules.rule import LOAD

    finding = UNREADABLE_FILE.finding(reason, None, hint or "pass a UTF-8 TOML job config", stage=LOAD)
    return FileReport(path, LoadResult(path=path, source=None, job=None), [finding])


def _check(path: str, options: Options, settings: Settings, text: str | None) -> FileReport:
    load = load_job_text(text, path, options.overrides) if text is not None else load_job(path, options.overrides)
    report = FileReport(path=path, load=load, findings=list(load.findings), settings=settings)
    report.strict = options.strict if options.strict is not None else bool(settings.strict)
    if settings.problem is not None:
        from kforge_cli.rules.loading import INVALID_SETTINGS

        report.findings.insert(0, INVALID_SETTINGS.finding(str(settings.problem), None, settings.problem.hint))
    job = load.job
    if job is not None:
        world_size = options.world_size or settings.world_size
        written = _merge(load.source.data if load.source else {}, load.overrides)
        subject = Subject(job=job, data=written, world_size=world_size)
        report.subject = subject
        _run_stages(report, subject, options)
    if load.source is not None:
        report.findings = locate(report.findings, load.source)
    _finish(report, options, settings)
    return report


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """The tables as written: the file, then the overrides (what the user, not a default, set)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _bad_keys(report: FileReport) -> set[str]:
    bad = set(report.load.bad_keys)
    bad.update(f.key for f in report.findings if f.is_error and f.key)
    return bad


def _run_stages(report: FileReport, subject: Subject, options: Options) -> None:
    from kforge_cli.rules import all_checks

    checks = all_checks()
    bad = KeyIndex()  # grows as stages reject keys; rebuilt from scratch it was quadratic on hostile files
    for stage in (*STAGES[1:], None):
        if stage == LOOP:
            _plan(report, subject)
            _predict_memory(report, subject, options)
        elif stage == CHECKPOINT and options.model_ckpt:
            _read_checkpoint(report, subject, options.model_ckpt)
        bad.add(_bad_keys(report))
        for check in checks:
            if check.stage == stage and _ready(check, subject) and not blocked(check, bad):
                report.findings.extend(check.run(subject))
        if stage == BUILD:
            # After the build rules, so a failure they name is not reported twice.
            _build_model(report, subject, options)


def _ready(check: Check, subject: Subject) -> bool:
    needs = check.needs
    return not ((NEEDS_WORLD_SIZE in needs and subject.world_size is None)
                or (NEEDS_MANIFEST in needs and subject.manifest is None)
                or (NEEDS_PLAN in needs and subject.plan is None)
                or (NEEDS_CHECKPOINT in needs and subject.checkpoint is None)
                or (NEEDS_MEMORY in needs and subject.memory is None))


def build_model(job: Any, source: str = MANIFEST) -> Any:
    """The job's parameter list: the pure-Python manifest, or the meta-device model."""
    if source == META:
        from kforge_cli.model import build_meta_model

        return build_meta_model(job)
    from kforge_cli.manifest import build_manifest

    return build_manifest(job)


def _build_model(report: FileReport, subject: Subject, options: Options) -> None:
    from kforge_cli.manifest import ModelBuildError, ModelNotDescribed, ModelTooLarge
    from kforge_cli.rules.advice import NOTE
    from kforge_cli.rules.build import MODEL_BUILD_FAILS

    bad = _bad_keys(report)
    try:
        subject.manifest = build_model(subject.job, options.model_source)
    except (ModelTooLarge, ModelNotDescribed) as exc:
        report.model_error = exc
        report.findings.append(NOTE.finding(
            f"parameter-level checks skipped, the model was not built: {exc.message}", exc.key, exc.hint))
    except ModelBuildError as exc:
        report.model_error = exc
        already_reported = exc.key is not None and KeyIndex(bad).touches(exc.key)
        if not already_reported:
            report.findings.append(MODEL_BUILD_FAILS.finding(
                f"building the model fails: {exc.message}", exc.key, exc.hint or "fix the field named here",
                stage=BUILD))


def _plan(report: FileReport, subject: Subject) -> None:
    model = subject.manifest
    if model is None:
        return
    from kforge_cli.freeze.plan import plan_for_job

    stand_ins = subject.extras.get("stand_ins", ())
    saved_step = subject.extras.get("saved_step")
    subject.plan = plan_for_job(subject.job, model.parameters, unknown=model.unknown, stand_ins=stand_ins,
                                saved_step=saved_step)


DEFAULT_GPU = "H100 SXM 80GB"


def _predict_memory(report: FileReport, subject: Subject, options: Options) -> None:
    """The fit prediction the memory rules read, when a GPU is known (or the command asks)."""
    gpu_name = options.gpu or report.settings.gpu
    if subject.manifest is None or not (gpu_name or options.gpu_memory or options.predict_memory):
        return
    from kforge_cli.fit import LayoutError, custom_gpu, lookup_gpu, predict
    from kforge_cli.fit.layout import smallest_world_size
    from kforge_cli.fit.predict import frozen_names

    gpu = custom_gpu(options.gpu_memory) if options.gpu_memory else lookup_gpu(gpu_name or DEFAULT_GPU)
    world_size = subject.world_size or smallest_world_size(subject.job)
    if world_size is None:
        return
    try:
        params = subject.manifest.parameters
        subject.memory = predict(subject.job, params, gpu=gpu, world_size=world_size,
                                 frozen=frozen_names(subject.job, params, subject.plan))
    except LayoutError:
        return  # the world-size rule reports why the layout does not divide
    if subject.world_size is None:
        subject.memory.notes.append(f"no --world-size: assumed {world_size}, the fewest GPUs this layout takes")
    if not (gpu_name or options.gpu_memory):
        subject.memory.notes.append(f"no --gpu: assumed {gpu.name}")


def _read_checkpoint(report: FileReport, subject: Subject, path: str) -> None:
    from kforge_cli.checkpoint import (
        CheckpointError,
        UnsafeCheckpointError,
        read_checkpoint,
    )
    from kforge_cli.rules.checkpoint import unreadable_finding

    try:
        manifest = read_checkpoint(path)
    except UnsafeCheckpointError as exc:
        report.findings.append(unreadable_finding(path, exc.message, exc.hint, unsafe=True))
        return
    except CheckpointError as exc:
        report.findings.append(unreadable_finding(path, exc.message, exc.hint, unsafe=False))
        return
    view = CheckpointView(manifest.requested_path, manifest)
    model = subject.manifest
    if model is not None:
        from kforge_cli.checkpoint.compare import compare

        expected = [(p.name, tuple(p.shape)) for p in [*model.parameters, *model.buffers]]
        view.fit = compare(expected, manifest.tensors, unknown_prefixes=[u.prefix for u in model.unknown])
        # Re-plan with the checkpoint's stand-ins for unbuilt parts, marking the saved step.
        subject.extras["stand_ins"] = view.fit.stand_ins
        subject.extras["saved_step"] = manifest.step
        _plan(report, subject)
        plan = subject.plan
        view.frozen_at_step0 = set(plan.stages[0].frozen) if plan is not None and plan.stages else set()
    subject.checkpoint = view


# -- after the checks ------------------------------------------------------------------------


def _finish(report: FileReport, options: Options, settings: Settings) -> None:
    from kforge_cli.lint.suppression import apply_suppressions, parse_suppressions
    from kforge_cli.rules import all_rules

    findings = _fold_consequences(unique(report.findings))
    source = report.load.source
    if source is not None and source.may_hold_suppressions():
        suppressions = parse_suppressions(source.comments)
        if suppressions:
            applied = apply_suppressions(findings, suppressions, [r.code for r in all_rules()])
            findings = applied.kept + applied.unused
            report.suppressed = applied.suppressed
    selection = RuleSelection((settings.selection, options.selection))
    enabled: dict[str, bool] = {}  # per code: a file may hold thousands of findings of one rule

    def shown(code: str) -> bool:
        if code not in enabled:
            enabled[code] = selection.enabled(code)
        return enabled[code]

    report.findings = _capped(ordered(f for f in findings if shown(f.code)))


# A file with 300,000 unknown keys is one mistake, not 300,000 lines of output: each rule
# shows this many findings per file, then one line that counts the rest.
MAX_FINDINGS_PER_RULE = 20


def _capped(findings: list[Finding]) -> list[Finding]:
    shown: dict[str, int] = {}
    hidden: dict[str, int] = {}
    counts: dict[str, Finding] = {}
    out: list[Finding] = []
    for finding in findings:
        count = shown.get(finding.code, 0)
        omitted = finding.data.get("omitted")
        if omitted is not None:  # a count made earlier (the loader's): folded into the one below
            hidden[finding.code] = hidden.get(finding.code, 0) + omitted
            counts.setdefault(finding.code, finding)
        elif count < MAX_FINDINGS_PER_RULE:
            shown[finding.code] = count + 1
            out.append(finding)
        else:
            hidden[finding.code] = hidden.get(finding.code, 0) + 1
    for code, more in hidden.items():
        last = next((f for f in reversed(out) if f.code == code), None)
        if last is None:  # only a count of this rule: keep it as it was made
            out.append(counts[code])
            continue
        summary = Finding(code, last.severity, f"\u2026 and {more:,} more {code} findings in this file, "
                          f"like the {shown[code]} above", hint="fix those and run again",
                          stage=last.stage, data={"omitted": more})
        out.insert(out.index(last) + 1, summary)
    return out


def _fold_consequences(findings: list[Finding]) -> list[Finding]:
    """Drop findings about a key whose real value never arrived because of a typo elsewhere."""
    explained = [(f, key) for f in findings for key in f.data.get("explains", ())]
    if not explained:
        return findings
    index = KeyIndex(key for _, key in explained)
    out = []
    for finding in findings:
        # The index finds candidates in constant time; the scan confirms the cause is another finding.
        cause = None
        if finding.key and index.touches(finding.key):
            cause = next((root for root, key in explained
                          if root is not finding and touches(finding.key, key)), None)
        if cause is None:
            out.append(finding)
    return out


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Root causes first: errors before warnings, earlier trainer stages first, then file order."""
    return sorted(findings, key=lambda f: (_SEVERITY_RANK.get(f.severity, 3),
                                           _STAGE_RANK.get(f.stage or "", len(_STAGE_RANK)),
                                           f.line if f.line is not None else 1 << 30, f.column or 0))


__all__ = ["META", "MANIFEST", "CheckpointView", "FileReport", "Options", "build_model", "check_file",
           "check_files", "ordered", "unreadable_report"]
