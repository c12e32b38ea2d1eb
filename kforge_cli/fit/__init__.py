"""``kforge fit``: memory per GPU and throughput of a job, derived from the trainer's code.

Pure Python: no torch, numpy, typer or rich. Core functions return data; the
CLI renders it.
"""

from kforge_cli.fit.coverage import ACCoverage, activation_checkpointing_coverage
from kforge_cli.fit.gpus import GPU, KNOWN_GPUS, UnknownGPUError, custom_gpu, lookup_gpu
from kforge_cli.fit.layout import Layout, LayoutError, resolve_layout
from kforge_cli.fit.memory import TERMS, ParamLike, RankMemory
from kforge_cli.fit.predict import (
    FitPrediction,
    MemoryPrediction,
    Surprise,
    predict,
    verdict_for,
)
from kforge_cli.fit.suggest import Suggestion, apply_overrides, suggest
from kforge_cli.fit.throughput import Throughput, flops_per_token

__all__ = [
    "GPU", "KNOWN_GPUS", "TERMS", "ACCoverage", "FitPrediction", "Layout", "LayoutError", "MemoryPrediction",
    "ParamLike", "RankMemory", "Suggestion", "Surprise", "Throughput", "UnknownGPUError", "activation_checkpointing_coverage",
    "apply_overrides", "custom_gpu", "flops_per_token", "lookup_gpu", "predict", "resolve_layout", "suggest",
    "verdict_for",
]
