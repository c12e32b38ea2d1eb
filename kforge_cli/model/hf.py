"""HuggingFace vision encoders (siglip2, clip) on the meta device.

Rebuilt from a *local* copy of their config only (``local_files_only=True``,
never the network); without one their parameters are unknown, not guessed.
The rest of the model comes from ``kforge_cli.manifest``'s description.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from kforge_cli.manifest import ResolvedEncoder
from kforge_cli.manifest.knobs import VisionSpec

META = torch.device("meta")

# HF vision configs that omit these fields get the reference's fallbacks.
_HF_DEFAULT_IMAGE_SIZE = 224
_HF_DEFAULT_PATCH_SIZE = 16


def resolve_hf_encoder(spec: VisionSpec) -> ResolvedEncoder | str:
    """The vision tower on meta with its probed (feature_dim, num_tokens), or why it is unknown."""
    path = spec.path
    try:
        import transformers
    except ImportError:
        return ("transformers is not installed here, so the HuggingFace encoder's parameters "
                "cannot be listed")
    with _quiet_transformers(transformers):
        try:
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        except Exception as exc:
            return (f"no local copy of the model config for {path!r} (not a directory with "
                    f"config.json, not in the HF cache): {type(exc).__name__}")
        try:
            with torch.device(META), _skip_hf_init(transformers):
                full_model = transformers.AutoModel.from_config(config)
        except Exception as exc:
            return f"transformers could not build {path!r} from its config: {exc}"
    # CLIP / SigLIP models expose the vision tower as .vision_model; otherwise
    # the whole model is the tower.
    tower = getattr(full_model, "vision_model", full_model)
    tower_config = getattr(tower, "config", None)
    image_size = getattr(tower_config, "image_size", _HF_DEFAULT_IMAGE_SIZE)
    patch_size = getattr(tower_config, "patch_size", _HF_DEFAULT_PATCH_SIZE)
    hidden_size = getattr(tower_config, "hidden_size", None)
    # CLIP's CLS token is stripped and SigLIP has none: patches only, either way.
    num_tokens = (image_size // patch_size) ** 2
    # The reference marks a missing width as -1 and lets the adapter reject it.
    feature_dim = int(hidden_size) if hidden_size else -1
    return ResolvedEncoder(tower, feature_dim, num_tokens)


@contextlib.contextmanager
def _quiet_transformers(transformers_module: object) -> Iterator[None]:
    """Keep transformers' config chatter out of kforge's output; restore its verbosity after."""
    hf_logging = getattr(transformers_module, "logging", None)
    previous = hf_logging.get_verbosity() if hf_logging is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hf_logging is not None:
            hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            if hf_logging is not None and previous is not None:
                hf_logging.set_verbosity(previous)


def _skip_hf_init(transformers_module: object) -> contextlib.AbstractContextManager[object]:
    no_init = getattr(getattr(transformers_module, "modeling_utils", None), "no_init_weights", None)
    if no_init is None:
        return contextlib.nullcontext()
    try:
        return no_init()
    except TypeError:
        return contextlib.nullcontext()
