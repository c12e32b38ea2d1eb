"""[eval]: periodic evaluation (off by default)."""

from __future__ import annotations

from typing import ClassVar

from kforge_cli.config.fields import setting
from kforge_cli.config.section import Section
from kforge_cli.records import record


@record
class EvalConfig(Section):
    SECTION: ClassVar[str] = "eval"

    enabled: bool = setting(False, "run evaluation during training (ignored for VLM jobs)")
    interval: int = setting(1000, "evaluate every N training steps", unit="steps", gt=0)
    steps: int = setting(50, "eval batches per evaluation", gt=0)
    dataset_path: str = setting("", "pre-tokenized eval data directory")
    file_pattern: str = setting("*.npy", "glob of eval data files")
    hf_dataset_name: str | None = setting(None, "Hugging Face eval dataset")
    hf_dataset_config: str | None = setting(None, "Hugging Face eval dataset config")
    hf_dataset_split: str = setting("validation", "eval split")
