"""`kforge explain`: what a job file means (``job``) and what a config key does (``fields``)."""

from kforge_cli.config.catalog import all_field_keys, format_value, type_text
from kforge_cli.explain.fields import (
    Citation,
    FieldDoc,
    FieldSummary,
    UnknownFieldError,
    describe_field,
)
from kforge_cli.explain.job import (
    ArchView,
    BuildFailure,
    CrossAttentionLayout,
    Explanation,
    FieldRow,
    ParamCounts,
    SectionView,
    StageCount,
    TokenBudgetView,
    explain_file,
    explain_report,
)

__all__ = [
    "ArchView", "BuildFailure", "Citation", "CrossAttentionLayout", "Explanation", "FieldDoc", "FieldRow",
    "FieldSummary", "ParamCounts", "SectionView", "StageCount", "TokenBudgetView", "UnknownFieldError",
    "all_field_keys", "describe_field", "explain_file", "explain_report", "format_value", "type_text",
]
