"""``kforge fit``: memory per GPU and throughput of a job, derived from the trainer's code.

Pure Python: no torch, numpy, typer or rich. Core functions return data; the
CLI renders it. Names are imported from their module on first use, so a rule
that needs only ``fit.coverage`` does not load the memory model at every start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kforge_cli.fit.coverage import ACCoverage, activation_checkpointing_coverage
    from kforge_cli.fit.gpus import GPU, KNOWN_GPUS, UnknownGPUError, custom_gpu, lookup_gpu
    from kforge_cli.fit.layout import Layout, LayoutError, resolve_layout
    from kforge_cli.fit.memory import TERMS, ParamLike, RankMemory
    from kforge_cli.fit.predict import FitPrediction, MemoryPrediction, Surprise, predict, verdict_for
    from kforge_cli.fit.suggest import Suggestion, apply_overrides, suggest
    from kforge_cli.fit.throughput import Throughput, flops_per_token

_HOME = {
    "coverage": ("ACCoverage", "activation_checkpointing_coverage"),
    "gpus": ("GPU", "KNOWN_GPUS", "UnknownGPUError", "custom_gpu", "lookup_gpu"),
    "layout": ("Layout", "LayoutError", "resolve_layout"),
    "memory": ("TERMS", "ParamLike", "RankMemory"),
    "predict": ("FitPrediction", "MemoryPrediction", "Surprise", "predict", "verdict_for"),
    "suggest": ("Suggestion", "apply_overrides", "suggest"),
    "throughput": ("Throughput", "flops_per_token"),
}
__all__ = [
    "ACCoverage",
    "FitPrediction",
    "GPU",
    "KNOWN_GPUS",
    "Layout",
    "LayoutError",
    "MemoryPrediction",
    "ParamLike",
    "RankMemory",
    "Suggestion",
    "Surprise",
    "TERMS",
    "Throughput",
    "UnknownGPUError",
    "activation_checkpointing_coverage",
    "apply_overrides",
    "custom_gpu",
    "flops_per_token",
    "lookup_gpu",
    "predict",
    "resolve_layout",
    "suggest",
    "verdict_for",
]
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_MODULE_OF)
