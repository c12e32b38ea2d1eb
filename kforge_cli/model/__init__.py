"""Meta-device model builder: the only package that imports torch.

``build_meta_model(job)`` returns the parameter manifest of the model the
KempnerForge trainer would build for ``job``. torch is imported on the first
call, so importing this package (e.g. to catch ``ModelBuildError``) stays cheap.
"""

from __future__ import annotations

from typing import Any

from kforge_cli.model.knobs import cross_attention_after_layers
from kforge_cli.model.manifest import MetaModel, ModelBuildError, ModelTooLarge, ParamInfo, UnknownComponent

# Real models stay in the low hundreds of layers; building millions of modules,
# even on the meta device, would take minutes for a config that is a typo.
MAX_BUILT_LAYERS = 20_000

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

    Raises ``ModelBuildError`` wherever the trainer's own model build would fail.
    """
    import warnings

    layers = getattr(getattr(job, "model", None), "n_layers", 0)
    if isinstance(layers, int) and layers > MAX_BUILT_LAYERS:
        raise ModelTooLarge(f"model.n_layers = {layers} is beyond what kforge builds ({MAX_BUILT_LAYERS:,} layers)",
                            "model.n_layers", "check model.n_layers for a typo")
    # torch warns at import when NumPy is absent; building on meta never needs NumPy.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    from kforge_cli.model.build import build_meta_model as build

    try:
        return build(job)
    except ModelBuildError:
        raise
    except (ArithmeticError, MemoryError, RuntimeError, TypeError, ValueError) as exc:
        # Sizes torch itself refuses (e.g. a dimension past int64): the trainer fails the same way.
        raise ModelBuildError(f"torch cannot build this model: {type(exc).__name__}: {exc}", None,
                              "check model.dim, vocab_size and the head counts for typos") from None

