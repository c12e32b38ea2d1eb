"""GPUs ``kforge fit`` knows: memory capacity and dense bf16 peak, each with its source.

Capacity is what the device reports to NVML (``nvidia-smi`` ``memory.total``),
i.e. the ceiling ``torch.cuda.max_memory_allocated()`` can approach, in GiB.
NVIDIA's marketing sizes are decimal GB and are not that number (an "80 GB"
H100 reports 81,559 MiB).

Peaks are the dense (no sparsity) bf16 tensor-core TFLOPS the trainer divides
by when it logs MFU. The trainer's own table (``kempnerforge/metrics/mfu.py:25-45``
at 5666d0d) is used for its values, but looked up by exact model name: the
trainer matches by substring in dict order (``mfu.py:66-69``), so a device named
"NVIDIA H100 PCIe" hits the "H100" entry first and gets the SXM peak (989)
instead of its own 756. kforge never does that.
"""

from __future__ import annotations

from kforge_cli.records import record

# NVML capacities per GPU model, from the Modal engineering post "Why does an
# NVIDIA H100 80GB card offer 85.52 GB?" (thundergolfer.com/blog/nvidia-gpu-memory-capacity),
# table "Actual, MiB": H200 143,771; H100 80GB 81,559; A100 80GB 81,920;
# A100 40GB 40,960; L40S 46,068.
_NVML_SOURCE = "NVML memory.total as tabulated in thundergolfer.com/blog/nvidia-gpu-memory-capacity"
_MFU_TABLE = "kempnerforge/metrics/mfu.py:25-45 (_GPU_PEAK_TFLOPS)"


@record(frozen=True)
class GPU:
    """One GPU model: what fit compares memory and throughput against."""

    name: str
    capacity_gib: float
    peak_tflops: float | None  # dense bf16; None when unknown (an explicit --gpu-memory)
    capacity_source: str
    peak_source: str
    aliases: tuple[str, ...] = ()


def _mib(value: int) -> float:
    return value / 1024


KNOWN_GPUS: tuple[GPU, ...] = (
    GPU("H100 SXM 80GB", _mib(81_559), 989.0, _NVML_SOURCE, f"{_MFU_TABLE} 'H100 SXM'",
        ("H100", "H100 SXM", "H100-SXM", "H100-SXM5-80GB", "H100 80GB HBM3")),
    # The PCIe card carries the same 80 GB part as the SXM one; NVML's total is
    # taken to be the SXM figure (the source table lists one "H100 80GB" row).
    GPU("H100 PCIe", _mib(81_559), 756.0, f"{_NVML_SOURCE} (the 'H100 80GB' row; PCIe assumed equal)",
        f"{_MFU_TABLE} 'H100 PCIe'", ("H100-PCIE", "H100 PCIe 80GB", "H100-PCIE-80GB")),
    GPU("H200", _mib(143_771), 989.0, _NVML_SOURCE, f"{_MFU_TABLE} 'H200'",
        ("H200 SXM", "H200-SXM", "H200 141GB", "NVIDIA H200")),
    GPU("A100 80GB", _mib(81_920), 312.0, _NVML_SOURCE, f"{_MFU_TABLE} 'A100-SXM4-80GB'",
        ("A100-80GB", "A100-SXM4-80GB", "A100-PCIE-80GB", "A100 SXM 80GB")),
    GPU("A100 40GB", _mib(40_960), 312.0, _NVML_SOURCE, f"{_MFU_TABLE} 'A100-SXM4-40GB'",
        ("A100-40GB", "A100-SXM4-40GB", "A100-PCIE-40GB", "A100", "A100 SXM 40GB")),
    GPU("L40S", _mib(46_068), 362.0, _NVML_SOURCE, f"{_MFU_TABLE} 'L40S'", ("L40S 48GB",)),
)


class UnknownGPUError(ValueError):
    """``--gpu NAME`` names no GPU in the table."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.known = [g.name for g in KNOWN_GPUS]
        super().__init__(f"unknown GPU {name!r}; known: {', '.join(self.known)} "
                         "(or give the capacity with --gpu-memory GIB)")


def _key(name: str) -> str:
    text = name.strip().lower().removeprefix("nvidia ")
    return "".join(ch for ch in text if ch.isalnum())


_BY_KEY: dict[str, GPU] = {}
for _gpu in KNOWN_GPUS:
    for _alias in (_gpu.name, *_gpu.aliases):
        _BY_KEY.setdefault(_key(_alias), _gpu)


def lookup_gpu(name: str) -> GPU:
    """The GPU called ``name`` (exact model name or alias, case and punctuation ignored)."""
    found = _BY_KEY.get(_key(name))
    if found is None:
        raise UnknownGPUError(name)
    return found


def completion_names() -> list[str]:
    """One name per GPU that a shell can complete as a single word (no blanks)."""
    names = []
    for gpu in KNOWN_GPUS:
        names.append(next(name for name in (gpu.name, *gpu.aliases, _key(gpu.name)) if " " not in name))
    return names


def custom_gpu(capacity_gib: float, name: str | None = None) -> GPU:
    """A device known only by its capacity (``--gpu-memory``): no peak, so no MFU."""
    if not capacity_gib > 0:
        raise ValueError(f"GPU memory must be positive (got {capacity_gib})")
    return GPU(name or f"{capacity_gib:g} GiB GPU", float(capacity_gib), None, "given with --gpu-memory",
               "unknown (no --gpu)")
