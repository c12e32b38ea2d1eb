"""Rules reported while a file is read: syntax, unknown keys, types, field constraints.

The loader (``kforge_cli.config``) emits these itself, as the reference's
loader raises while it builds the JobConfig; they have no engine check.
"""

from __future__ import annotations

from kforge_cli.rules.rule import ERROR, LOAD, STARTUP, WARNING, Rule

INTERNAL_ERROR = Rule(
    "KF000", "internal-error", ERROR,
    "kforge itself failed while checking the file (a bug in kforge, reported for that file only; exit 3).",
    "an exception inside a rule", emitted_by="the engine", suppressible=False)

UNREADABLE_FILE = Rule(
    "KF001", "unreadable-file", ERROR,
    "The file cannot be read, is not UTF-8, or is not valid TOML.",
    'arch = "joint_decoder   (unterminated string)',
    emitted_at=(LOAD,), emitted_by="the TOML reader", suppressible=False)

INVALID_SETTINGS = Rule(
    "KF003", "invalid-settings", ERROR,
    "The pyproject.toml whose [tool.kforge] table governs this file cannot be read, or the table is invalid.",
    '[tool.kforge] ignore = "KF4"  (a string, not a list)',
    emitted_by="the settings discovery", suppressible=False)

UNUSED_SUPPRESSION = Rule(
    "KF002", "unused-suppression", WARNING,
    "A `# kforge: ignore[...]` comment that suppresses nothing (the code does not fire there).",
    "seq_len = 512  # kforge: ignore[KF405]",
    emitted_by="the suppression-comment scan")

UNKNOWN_KEY = Rule(
    "KF101", "unknown-key", ERROR,
    "A key or section the reference does not know; its loader rejects the whole file.",
    "[model] dimm = 256  ->  did you mean model.dim?",
    emitted_at=(LOAD,), emitted_by="the loader")

WRONG_TYPE = Rule(
    "KF102", "wrong-type", ERROR,
    "A value of a type the reference cannot coerce (or keeps as is and fails on later).",
    'model.dim = "abc"',
    emitted_at=(LOAD, STARTUP), emitted_by="the loader")

INVALID_VALUE = Rule(
    "KF103", "invalid-value", ERROR,
    "A value outside its allowed range, enum, divisibility rule or registry.",
    'model.dim = 0; vlm.arch = "perceiver"; optimizer.name = "adamx"',
    emitted_at=(LOAD,), emitted_by="the field constraints and section rules")

MISSING_REQUIRED = Rule(
    "KF104", "missing-required", ERROR,
    "A required field or section is missing.",
    "[vlm] without [vision_encoder]",
    emitted_at=(LOAD,), emitted_by="the section rules")

LEGACY_LAYOUT = Rule(
    "KF105", "legacy-layout", ERROR,
    "The legacy [model.vlm] layout; `kforge convert` migrates it.",
    '[model.vlm] vision_encoder = "random"',
    emitted_at=(LOAD,), emitted_by="the loader", reads=("model.vlm",))

ARCH_OVERRIDE_KEEPS_MODEL = Rule(
    "KF408", "arch-override-keeps-model", WARNING,
    "A --set vlm.arch override rewrites only the arch string: the trainer keeps the config class built from "
    "the file and builds that arch's model.", "--set vlm.arch=mot on a joint_decoder file",
    emitted_by="the loader")

LOSSY_COERCION = Rule(
    "KF401", "lossy-coercion", WARNING,
    "A value accepted only through the reference's lossy coercion.",
    'dim = 256.0; compile_model = "no"',
    emitted_by="the loader")

MODULE_PATTERNS_TRAP = Rule(
    "KF406", "module-patterns-trap", WARNING,
    "vlm.module_patterns replaces the default aliases, or an alias value is not a list of patterns (a string "
    "is iterated by character, a table by key, and a number fails once a freeze spec names it).",
    '[vlm.module_patterns] layer0 = ["transformer.layers.0.*"]',
    emitted_by="the loader and the advice checks")

__all__ = [
    "ARCH_OVERRIDE_KEEPS_MODEL", "INTERNAL_ERROR", "INVALID_SETTINGS", "MODULE_PATTERNS_TRAP", "INVALID_VALUE",
    "LEGACY_LAYOUT", "LOSSY_COERCION", "MISSING_REQUIRED", "UNKNOWN_KEY", "UNREADABLE_FILE", "UNUSED_SUPPRESSION",
    "WRONG_TYPE",
]
