"""[checkpoint]: saving, retention and resumption."""

from __future__ import annotations

from typing import Any, ClassVar

from kforge_cli.config.fields import JobCondition, Use, setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.rule import LOAD, LOOP, STARTUP

ASYNC_MODES = ("disabled", "async", "async_with_pinned_mem")
EXPORT_DTYPES = ("float32", "bfloat16")


@record
class DynamicCheckpointWindow(Section):
    """[checkpoint.dyn_ckpt_window]: a dense-save window exempt from keep_last_n."""

    SECTION: ClassVar[str] = "checkpoint.dyn_ckpt_window"

    start: int = setting(0, "first step of the window (0 also saves the initial weights)", unit="steps", ge=0,
                         fix="use 0")
    stop: int = setting(512, "last step of the window", unit="steps", ge="start")
    strategy: str = setting("power2", "which steps inside the window are saved", registry="dyn_ckpt_strategy",
                            looked_up=LOAD)

    def is_milestone(self, step: int) -> bool:
        # Only the built-in strategy can be evaluated here; plugin strategies are opaque.
        if self.strategy != "power2":
            return step == self.start
        if step < self.start or step > self.stop:
            return False
        offset = step - self.start
        return offset == 0 or (offset & (offset - 1)) == 0


def _first_save_at_startup(s: Any) -> bool:
    window = s.job.checkpoint.dyn_ckpt_window
    return isinstance(window, DynamicCheckpointWindow) and window.is_milestone(0)


STEP0_SAVE = JobCondition("checkpoint.dyn_ckpt_window covers step 0 (a checkpoint is saved before the first step)",
                          _first_save_at_startup, ("checkpoint.dyn_ckpt_window",))
LOAD_PATH_SET = JobCondition("it is truthy", lambda s: bool(s.job.checkpoint.load_path), ())


@record
class CheckpointConfig(Section):
    SECTION: ClassVar[str] = "checkpoint"

    dir: str = setting("checkpoints", "checkpoint root directory (step_N/ subdirectories)", used=(
        Use(STARTUP, "CheckpointManager builds Path(checkpoint.dir)"),))
    interval: int = setting(1000, "save every N steps outside the dynamic window", unit="steps", gt=0)
    dyn_ckpt_window: DynamicCheckpointWindow | None = setting(None, "optional dense-save window", used=(
        Use(STARTUP, "before the first step the trainer asks it is_milestone(0), which only a table has"),))
    async_mode: str = setting("disabled", "asynchronous DCP saving", choices=ASYNC_MODES, enum=True)
    keep_last_n: int = setting(3, "recent checkpoints kept (<= 0 keeps all)", used=(
        Use(STARTUP, "the cleanup after the step-0 save compares it with 0", STEP0_SAVE),
        Use(LOOP, "the cleanup after the first checkpoint save compares it with 0")))
    load_path: str | None = setting(None, "checkpoint to load (unset = resume from dir/latest)", used=(
        Use(STARTUP, "a truthy load_path sends the trainer down the resume path, which builds "
            "Path(checkpoint.load_path)", LOAD_PATH_SET),))
    export_dtype: str = setting("bfloat16", "dtype of exported weights", choices=EXPORT_DTYPES, enum=True)
    exclude_from_loading: list[str] = setting(factory=list,
                                              doc="state keys not loaded on resume (e.g. optimizer)")
    ignore_freeze_mismatch: bool = setting(
        False, "load even when the checkpoint's freeze metadata differs from the config")

    def covers_step0(self) -> bool:
        window = self.dyn_ckpt_window
        return isinstance(window, DynamicCheckpointWindow) and window.is_milestone(0)
