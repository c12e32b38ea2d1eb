"""Migrating job files from the legacy ``[model.vlm]`` layout (``kforge convert``).

Pure Python, no printing: ``layout`` says where each legacy field goes,
``rewrite`` turns a file's text into the current layout, ``files`` reads inputs
and writes results safely (atomic, locked, ownership kept).  ``cli/`` reports.
"""

from __future__ import annotations

from kforge_cli.convert.layout import (
    LEGACY_FIELD_MAP,
    LEGACY_TABLE,
    TARGET_SECTIONS,
    legacy_target,
)
from kforge_cli.convert.rewrite import (
    Conflict,
    ConversionConflict,
    ConversionError,
    ConversionResult,
    Move,
    TomlSyntaxError,
    convert_text,
    needs_conversion,
)

__all__ = [
    "LEGACY_FIELD_MAP",
    "LEGACY_TABLE",
    "TARGET_SECTIONS",
    "Conflict",
    "ConversionConflict",
    "ConversionError",
    "ConversionResult",
    "Move",
    "TomlSyntaxError",
    "convert_text",
    "legacy_target",
    "needs_conversion",
]
