"""Meta-device model builder: the only package that imports torch.

``build_meta_model(job)`` returns the job's parameter manifest together with
the model as torch modules on the meta device. The tree itself is
``kforge_cli.manifest``'s torch-free description; this package materializes
it and adds HuggingFace encoders rebuilt from a local config. torch is
imported on the first call, so importing this package (e.g. to catch
``ModelBuildError``) stays cheap.
"""

from __future__ import annotations

from typing import Any

from kforge_cli.manifest import (
    ModelBuildError,
    ModelTooLarge,
    ParamInfo,
    UnknownComponent,
    cross_attention_after_layers,
)
from kforge_cli.model.meta import MetaModel

__all__ = [
    "MetaModel",
    "ModelBuildError",
    "ModelTooLarge",
    "ParamInfo",
    "UnknownComponent",
    "build_meta_model",
    "cross_attention_after_layers",
]


def build_meta_model(job: Any) -> MetaModel:
    """Build ``job``'s model on the meta device.

    Raises ``ModelBuildError`` wherever the trainer's own model build would fail,
    and ``ModelTooLarge`` for models past kforge's bounds (``kforge_cli.manifest.bounds``).
    """
    import warnings

    # torch warns at import when NumPy is absent; building on meta never needs NumPy.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    from kforge_cli.model.build import build_meta_model as build

    try:
        return build(job)
    except ModelBuildError:
        raise
    except (ArithmeticError, MemoryError, RuntimeError, TypeError, ValueError, KeyError) as exc:
        # The description refuses what torch would; this is a last guard, never expected.
        raise ModelBuildError(f"torch cannot build this model: {type(exc).__name__}: {exc}", None,
                              "check model.dim, vocab_size and the head counts for typos") from None
