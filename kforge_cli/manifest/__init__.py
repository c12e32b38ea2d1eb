"""The parameter manifest of a job's model, in pure Python (no torch, not even lazily).

``build_manifest(job)`` lists the parameters (names, shapes, frozen-at-construction
flags) and persistent buffers the KempnerForge trainer would create for ``job``,
in the trainer's ``named_parameters()`` / ``state_dict()`` order, plus what the
VLM wrapper resolves (visual tokens, encoder width, cross-attention positions).
It is computed from one description of the module tree (``describe_model``);
``kforge_cli.model`` builds its meta-device modules from the same description.
"""

from __future__ import annotations

from kforge_cli.manifest.bounds import MAX_EXPERTS, MAX_LAYERS, MAX_PARAMETER_TENSORS
from kforge_cli.manifest.describe import (
    EncoderResolver,
    ModelDescription,
    ResolvedEncoder,
    build_manifest,
    describe_model,
)
from kforge_cli.manifest.errors import ModelBuildError, ModelNotDescribed, ModelTooLarge
from kforge_cli.manifest.knobs import cross_attention_after_layers
from kforge_cli.manifest.result import (
    LIMIT_PHRASES,
    LIMITS_FEATURE_DIM,
    LIMITS_NUM_TOKENS,
    LIMITS_PARAMETERS,
    Manifest,
    ParamInfo,
    UnknownComponent,
)

__all__ = [
    "LIMITS_FEATURE_DIM",
    "LIMITS_NUM_TOKENS",
    "LIMITS_PARAMETERS",
    "LIMIT_PHRASES",
    "MAX_EXPERTS",
    "MAX_LAYERS",
    "MAX_PARAMETER_TENSORS",
    "EncoderResolver",
    "Manifest",
    "ModelBuildError",
    "ModelDescription",
    "ModelNotDescribed",
    "ModelTooLarge",
    "ParamInfo",
    "ResolvedEncoder",
    "UnknownComponent",
    "build_manifest",
    "cross_attention_after_layers",
    "describe_model",
]
