"""Defaults that fit the machine: numeric precision and loader workers, detected, never assumed."""

from __future__ import annotations

import os
from pathlib import Path

BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}  # elsewhere bfloat16 is emulated, slower than fp32


def cpu_flags() -> set[str]:
    """The CPU feature flags the Linux kernel reports (empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.is_file() else []:
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def default_precision(accelerator: object = "auto") -> str:
    """The fastest safe precision for ``accelerator``: bf16 where native, else 16 (CUDA) or 32."""
    import torch  # here, so that the commands that never train do not load it

    name = str(accelerator).lower()
    if name in ("cuda", "gpu") or (name == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    on_cpu = name == "cpu" or (name == "auto" and not torch.backends.mps.is_available())
    return "bf16-mixed" if on_cpu and BF16_CPU_FLAGS & cpu_flags() else "32-true"


def available_cores() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers and CI)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def default_num_workers(requested: int | None = None) -> int:
    """Loader workers: ``requested``, or (``None``) one per core less the trainer's, at most 8."""
    return requested if requested is not None else max(0, min(8, available_cores() - 1))
