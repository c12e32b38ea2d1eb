"""[data]: sources, mixing and phase scheduling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.section import Section


@dataclass
class DatasetSource(Section):
    """One source of a multi-dataset mixture (a [[data.datasets]] entry)."""

    SECTION: ClassVar[str] = "data.datasets[]"

    path: str = setting("", "pre-tokenized data directory")
    weight: float = setting(1.0, "relative sampling weight (> 0)")
    name: str = setting("", "name used in per-dataset metrics (derived when empty)")
    hf_name: str = setting("", "Hugging Face dataset name")
    hf_config: str = setting("", "Hugging Face dataset config")

    def rules(self, c: Checker) -> None:
        if is_number(self.weight) and self.weight <= 0:
            c.error("KF103", "weight", f"Dataset weight must be positive, got {self.weight}",
                    "use a positive relative weight, e.g. 1.0")


@dataclass
class TrainingPhase(Section):
    """A [[data.phases]] entry: new mixture weights and LR scale from start_step on."""

    SECTION: ClassVar[str] = "data.phases[]"

    start_step: int = setting(0, "step at which the phase starts", unit="steps")
    dataset_weights: dict[str, float] = setting(factory=dict, doc="dataset name -> mixture weight")
    lr_scale: float = setting(1.0, "multiplier on the scheduled LR during the phase")

    def rules(self, c: Checker) -> None:
        if is_number(self.start_step) and self.start_step < 0:
            c.error("KF103", "start_step", "TrainingPhase.start_step must be non-negative", "use 0 or more")
        if is_number(self.lr_scale) and self.lr_scale <= 0:
            c.error("KF103", "lr_scale", "TrainingPhase.lr_scale must be positive", "use 1.0 for no change")
        if isinstance(self.dataset_weights, dict):
            for name, weight in self.dataset_weights.items():
                if is_number(weight) and weight < 0:
                    c.error("KF103", f"dataset_weights.{name}",
                            f"TrainingPhase.dataset_weights['{name}'] must be non-negative",
                            "use 0 to drop a dataset in this phase")


@dataclass
class DataConfig(Section):
    SECTION: ClassVar[str] = "data"

    dataset_path: str = setting("", "pre-tokenized training data directory")
    file_pattern: str = setting("*.npy", "glob of data files inside dataset_path")
    tokenizer_path: str = setting("", "tokenizer name or path (required for HF and VLM data)")
    num_workers: int = setting(4, "dataloader worker processes")
    pin_memory: bool = setting(True, "pin host memory for faster transfers")
    prefetch_factor: int = setting(2, "batches prefetched per worker")
    hf_dataset_name: str | None = setting(None, "Hugging Face dataset name or local save_to_disk path")
    hf_dataset_config: str | None = setting(None, "Hugging Face dataset config name")
    hf_dataset_split: str = setting("train", "dataset split")
    hf_dataset_text_field: str = setting("text", "text column")
    hf_dataset_image_field: str = setting("image", "image column (VLM only)")
    hf_dataset_prompt_field: str = setting("", "prompt column masked from the loss (VLM only; empty = none)")
    hf_image_size: int = setting(224, "square image size after preprocessing (VLM only)", unit="px")
    hf_streaming: bool = setting(False, "stream the HF dataset instead of downloading it")
    pack_sequences: bool = setting(False, "document-aware sequence packing")
    datasets: list[DatasetSource] = setting(factory=list, doc="multi-dataset mixture (overrides single sources)")
    mix_temperature: float = setting(1.0, "mixture weight temperature (1 = as given, > 1 = flatter)")
    phases: list[TrainingPhase] = setting(factory=list, doc="step-triggered mixture / LR phases")
    anneal_start_step: int = setting(0, "shortcut for a two-phase anneal (0 = off)", unit="steps")
    anneal_weights: dict[str, float] = setting(factory=dict, doc="mixture weights of the anneal phase")

    def rules(self, c: Checker) -> None:
        if is_number(self.num_workers) and self.num_workers < 0:
            c.error("KF103", "num_workers", "num_workers must be non-negative", "use 0 for in-process loading")
        if is_number(self.prefetch_factor) and self.prefetch_factor < 1:
            c.error("KF103", "prefetch_factor", "prefetch_factor must be >= 1", "use 2")
        if is_number(self.mix_temperature) and self.mix_temperature <= 0:
            c.error("KF103", "mix_temperature", "mix_temperature must be positive", "use 1.0")
        for i, src in enumerate(self.datasets):
            if isinstance(src, DatasetSource) and not src.path and not src.hf_name:
                c.error("KF104", f"datasets[{i}]",
                        f"DatasetSource '{src.name}' must have either path or hf_name",
                        f"set data.datasets[{i}].path or data.datasets[{i}].hf_name")
        steps = [p.start_step for p in self.phases if isinstance(p, TrainingPhase)]
        if steps and len(steps) == len(self.phases):
            try:
                ordered = steps == sorted(steps) and len(steps) == len(set(steps))
            except TypeError:
                ordered = True
            if not ordered:
                c.error("KF103", "phases", "data.phases start_steps must be strictly monotonically increasing",
                        f"order the phases by start_step with no repeats (got {steps})")
        if is_number(self.anneal_start_step) and self.anneal_start_step < 0:
            c.error("KF103", "anneal_start_step", "anneal_start_step must be non-negative", "use 0 to disable")
        if self.phases and is_number(self.anneal_start_step) and self.anneal_start_step > 0:
            c.error("KF103", "anneal_start_step",
                    "Cannot use both data.phases and data.anneal_start_step — use phases for "
                    "multi-phase scheduling", "express the anneal as one more [[data.phases]] entry")
