"""[data]: sources, mixing and phase scheduling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from kforge_cli.config.fields import Checker, JobCondition, Use, is_number, setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.loading import INVALID_VALUE, MISSING_REQUIRED
from kforge_cli.rules.rule import LOOP, STARTUP


@record
class DatasetSource(Section):
    """One source of a multi-dataset mixture (a [[data.datasets]] entry)."""

    SECTION: ClassVar[str] = "data.datasets[]"

    path: str = setting("", "pre-tokenized data directory")
    weight: float = setting(1.0, "relative sampling weight", gt=0, fix="use a positive relative weight, e.g. 1.0")
    name: str = setting("", "name used in per-dataset metrics (derived when empty)")
    hf_name: str = setting("", "Hugging Face dataset name")
    hf_config: str = setting("", "Hugging Face dataset config")


@record
class TrainingPhase(Section):
    """A [[data.phases]] entry: new mixture weights and LR scale from start_step on."""

    SECTION: ClassVar[str] = "data.phases[]"

    start_step: int = setting(0, "step at which the phase starts", unit="steps", ge=0)
    dataset_weights: dict[str, float] = setting(factory=dict, doc="dataset name -> mixture weight")
    lr_scale: float = setting(1.0, "multiplier on the scheduled LR during the phase", gt=0,
                              fix="use 1.0 for no change")

    def rules(self, c: Checker) -> None:
        if isinstance(self.dataset_weights, dict):
            for name, weight in self.dataset_weights.items():
                if is_number(weight) and weight < 0:
                    c.report(INVALID_VALUE, f"dataset_weights.{name}",
                             f"{c.key('dataset_weights')}[{name!r}] must be non-negative (got {weight!r})",
                             "use 0 to drop a dataset in this phase")


def _anneal_builds_dict(s: Any) -> bool:
    data = s.job.data
    if data.phases or not (is_number(data.anneal_start_step) and data.anneal_start_step > 0):
        return False
    if not data.anneal_weights:
        return False
    try:
        dict(data.anneal_weights)  # what the trainer does with it; a list of pairs passes
    except (TypeError, ValueError):
        return True
    return False


ANNEAL_FROM_WEIGHTS = JobCondition("data.anneal_start_step > 0 without data.phases (the anneal phase is built "
                                   "from it)", _anneal_builds_dict, ("data.phases", "data.anneal_start_step"))
IMAGE_DATA = JobCondition("a VLM job reads images (no [video])",
                          lambda s: s.job.vlm is not None and s.job.video is None, ("vlm.arch", "video"))


@record
class DataConfig(Section):
    SECTION: ClassVar[str] = "data"

    dataset_path: str = setting("", "pre-tokenized training data directory")
    file_pattern: str = setting("*.npy", "glob of data files inside dataset_path")
    tokenizer_path: str = setting("", "tokenizer name or path (required for HF and VLM data)")
    num_workers: int = setting(4, "dataloader worker processes", ge=0, fix="use 0 for in-process loading")
    pin_memory: bool = setting(True, "pin host memory for faster transfers")
    prefetch_factor: int = setting(2, "batches prefetched per worker", ge=1, fix="use 2")
    hf_dataset_name: str | None = setting(None, "Hugging Face dataset name or local save_to_disk path")
    hf_dataset_config: str | None = setting(None, "Hugging Face dataset config name")
    hf_dataset_split: str = setting("train", "dataset split")
    hf_dataset_text_field: str = setting("text", "text column")
    hf_dataset_image_field: str = setting("image", "image column (VLM only)")
    hf_dataset_prompt_field: str = setting("", "prompt column masked from the loss (VLM only; empty = none)")
    hf_image_size: int = setting(224, "square image size after preprocessing (VLM only)", unit="px", used=(
        Use(LOOP, "the VLM dataset resizes every image to (hf_image_size, hf_image_size) when the loop draws the "
            "first batch", IMAGE_DATA),))
    hf_streaming: bool = setting(False, "stream the HF dataset instead of downloading it")
    pack_sequences: bool = setting(False, "document-aware sequence packing")
    datasets: list[DatasetSource] = setting(factory=list, doc="multi-dataset mixture (overrides single sources)")
    mix_temperature: float = setting(1.0, "mixture weight temperature (1 = as given, > 1 = flatter)", gt=0,
                                     fix="use 1.0")
    phases: list[TrainingPhase] = setting(factory=list, doc="step-triggered mixture / LR phases")
    anneal_start_step: int = setting(0, "shortcut for a two-phase anneal (0 = off)", unit="steps", ge=0,
                                    fix="use 0 to disable")
    anneal_weights: dict[str, float] = setting(factory=dict, doc="mixture weights of the anneal phase", used=(
        Use(STARTUP, "the trainer builds the anneal phase with dict(data.anneal_weights), which fails",
            ANNEAL_FROM_WEIGHTS),))

    def rules(self, c: Checker) -> None:
        for i, src in enumerate(self.datasets):
            if isinstance(src, DatasetSource) and not src.path and not src.hf_name:
                c.report(MISSING_REQUIRED, f"datasets[{i}]",
                         f"data.datasets[{i}] ({src.name!r}) must have either path or hf_name",
                         f"set data.datasets[{i}].path or data.datasets[{i}].hf_name")
        steps = [p.start_step for p in self.phases if isinstance(p, TrainingPhase)]
        if steps and len(steps) == len(self.phases) and not strictly_increasing(steps):
            c.report(INVALID_VALUE, "phases", "data.phases start_steps must be strictly monotonically increasing",
                     f"order the phases by start_step with no repeats (got {steps})")
        if self.phases and is_number(self.anneal_start_step) and self.anneal_start_step > 0:
            c.report(INVALID_VALUE, "anneal_start_step",
                     "data.phases and data.anneal_start_step cannot be combined; use phases for multi-phase "
                     "scheduling", "express the anneal as one more [[data.phases]] entry")


def strictly_increasing(steps: Sequence[object]) -> bool:
    """The reference's ``steps == sorted(steps) and no repeats``; values that cannot be ordered pass."""
    try:
        return steps == sorted(steps) and len(steps) == len(set(steps))  # type: ignore[type-var]
    except TypeError:
        return True  # a mistyped start_step is the loader's to report
