"""kforge's model of the KempnerForge job schema (pure Python: no torch, typer or rich).

The names most callers need are re-exported here; every section lives in its
own module (``config.model``, ``config.vlm``, ...).
"""

from kforge_cli.config.job import JobConfig
from kforge_cli.config.loader import LoadResult, load_job, load_job_text, parse_override
from kforge_cli.config.registry import Registry, RegistryError, registry
from kforge_cli.config.resolved import resolved_dict
from kforge_cli.config.vlm import (
    DEFAULT_MODULE_PATTERNS,
    CrossAttentionConfig,
    FreezeSpec,
    FreezeStage,
    JointDecoderConfig,
    MoMaConfig,
    MoTConfig,
    VLMConfig,
)

__all__ = [
    "DEFAULT_MODULE_PATTERNS",
    "CrossAttentionConfig",
    "FreezeSpec",
    "FreezeStage",
    "JobConfig",
    "JointDecoderConfig",
    "LoadResult",
    "MoMaConfig",
    "MoTConfig",
    "Registry",
    "RegistryError",
    "VLMConfig",
    "load_job",
    "load_job_text",
    "parse_override",
    "registry",
    "resolved_dict",
]
