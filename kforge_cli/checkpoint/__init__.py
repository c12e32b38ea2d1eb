"""Untrusted checkpoint readers: names and shapes from a checkpoint, never its code.

One entry point, :func:`read_checkpoint`, for every supported layout (see
:mod:`kforge_cli.checkpoint.reader`); one module per format (``dcp``,
``torch_save``, ``safetensors``, ``hf``) over shared pieces: ``safe_io``
(opening paths), ``safe_pickle`` (the bounded restricted unpickler) and its
``allow_list`` (what a pickle may name, and the stand-ins it gets),
``safe_json``, ``layout`` (run directories) and ``limits`` (every cap).
``compare`` fits a model's parameter list to what was read.

Pure Python: nothing here imports torch.
"""

from kforge_cli.checkpoint.errors import (
    CheckpointError,
    CheckpointLimitError,
    UnsafeCheckpointError,
)
from kforge_cli.checkpoint.hf import hf_to_kempnerforge_name, looks_hf_named
from kforge_cli.checkpoint.manifest import (
    FORMAT_DCP,
    FORMAT_DCP_PIPELINE,
    FORMAT_HF_SHARDED,
    FORMAT_SAFETENSORS,
    FORMAT_TORCH,
    CheckpointManifest,
    normalize_parameter_name,
)
from kforge_cli.checkpoint.reader import read_checkpoint

__all__ = [
    "FORMAT_DCP", "FORMAT_DCP_PIPELINE", "FORMAT_HF_SHARDED", "FORMAT_SAFETENSORS", "FORMAT_TORCH",
    "CheckpointError", "CheckpointLimitError", "CheckpointManifest", "UnsafeCheckpointError",
    "hf_to_kempnerforge_name", "looks_hf_named", "normalize_parameter_name",
    "read_checkpoint",
]
