"""Defaults that fit the machine: numeric precision and loader workers, detected, never assumed.

``bf16-mixed`` is used on a CPU only when it has native bfloat16 instructions (AVX512-BF16 or
AMX); elsewhere bfloat16 is emulated and slower than float32. On CUDA, ``bf16-mixed`` where the
GPU supports it (Ampere and newer), ``16-mixed`` otherwise.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_flags() -> set[str]:
    """The CPU feature flags the Linux kernel reports (empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (so ``bf16-mixed`` speeds training up)."""
    return bool(BF16_CPU_FLAGS & cpu_flags())


def uses_cuda(accelerator: object) -> bool:
    """Whether a Trainer with this ``accelerator`` setting will run on a CUDA GPU."""
    name = str(accelerator).lower()
    import torch  # here, so that the commands that never train do not load it

    return name in ("cuda", "gpu") or (name == "auto" and torch.cuda.is_available())


def default_precision(accelerator: object = "auto") -> str:
    """The fastest safe Trainer precision for ``accelerator`` on this machine."""
    import torch

    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    name = str(accelerator).lower()
    on_cpu = name == "cpu" or (name == "auto" and not torch.backends.mps.is_available())
    return "bf16-mixed" if on_cpu and cpu_supports_bf16() else "32-true"


def available_cores() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers and CI)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def default_num_workers(requested: int | None = None) -> int:
    """Loader workers: ``requested``, or if ``None`` (auto) one per available core, less one for
    the training loop, at most 8."""
    if requested is not None:
        return requested
    return max(0, min(8, available_cores() - 1))
