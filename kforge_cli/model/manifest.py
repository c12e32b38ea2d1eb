"""Transitional: the result and error types now live in ``kforge_cli.manifest``.

Kept so ``from kforge_cli.model.manifest import ModelBuildError`` keeps working
(torch-free) while callers move to ``kforge_cli.manifest``.
"""

from __future__ import annotations

from kforge_cli.manifest import (
    ModelBuildError,
    ModelTooLarge,
    ParamInfo,
    UnknownComponent,
)
from kforge_cli.model.meta import MetaModel

__all__ = ["MetaModel", "ModelBuildError", "ModelTooLarge", "ParamInfo", "UnknownComponent"]
