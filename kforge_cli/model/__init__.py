"""Meta-device model builder: the only package that imports torch.

``build_meta_model(job)`` returns the parameter manifest of the model the
KempnerForge trainer would build for ``job``. torch is imported on the first
call, so importing this package (e.g. to catch ``ModelBuildError``) stays cheap.
"""

from __future__ import annotations

from typing import Any

from kforge_cli.model.knobs import cross_attention_after_layers
from kforge_cli.model.manifest import MetaModel, ModelBuildError, ParamInfo, UnknownComponent

__all__ = [
    "MetaModel",
    "ModelBuildError",
    "ParamInfo",
    "UnknownComponent",
    "build_meta_model",
    "cross_attention_after_layers",
]


def build_meta_model(job: Any) -> MetaModel:
    """Build ``job``'s model on the meta device.

    Raises ``ModelBuildError`` wherever the trainer's own model build would fail.
    """
    import warnings

    # torch warns at import when NumPy is absent; building on meta never needs NumPy.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    from kforge_cli.model.build import build_meta_model as build

    return build(job)

