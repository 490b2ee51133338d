"""Defaults that fit the machine: numeric precision and loader workers, detected, never assumed."""

from __future__ import annotations

import os
import re
from pathlib import Path

BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}  # elsewhere bfloat16 is emulated, slower than fp32
# CUDA compute capabilities: bf16 convolutions (cuDNN, Ampere) and fp16 tensor cores (Volta).
# torch.cuda.is_bf16_supported() also counts emulated bf16 (true on a T4, 7.5): not used.
BF16_CUDA, FP16_CUDA = (8, 0), (7, 0)


def cpu_flags() -> set[str]:
    """The CPU feature flags the Linux kernel reports (empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.is_file() else []:
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def default_precision(accelerator: object = "auto") -> str:
    """The fastest safe precision for ``accelerator``: bf16 where native (CUDA 8.0+, CPUs with
    bf16 instructions), fp16 on CUDA 7.x (T4, V100), else 32 (older GPUs, other CPUs)."""
    import torch  # here, so that the commands that never train do not load it

    name = str(accelerator).lower()
    if name in ("cuda", "gpu") or (name == "auto" and torch.cuda.is_available()):
        count = torch.cuda.device_count()
        oldest = min(torch.cuda.get_device_capability(index) for index in range(max(count, 1)))
        if oldest >= BF16_CUDA:
            return "bf16-mixed"
        return "16-mixed" if oldest >= FP16_CUDA else "32-true"
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


def runs_on(capability: tuple[int, int], arches: list[str]) -> bool:
    """Whether a torch build with kernels for ``arches`` (``torch.cuda.get_arch_list()``) runs on
    a GPU of compute ``capability``: a ``sm_XY`` binary runs on ``X.Y`` and later minors of
    ``X``, ``compute_XY`` (PTX) on ``X.Y`` and later; an empty or unknown list is trusted."""
    built = [re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch) for arch in arches]
    known = [(match[1], (int(match[2]), int(match[3]))) for match in built if match]
    return not known or any(
        capability >= version and (kind == "compute" or capability[0] == version[0])
        for kind, version in known
    )


def gpu_problem() -> str | None:
    """Why the visible GPUs cannot run under this torch build, in one line naming the GPU and the
    architectures the build has; ``None`` when they can or there is none."""
    import torch

    if not torch.cuda.is_available():
        return None
    try:
        arches = torch.cuda.get_arch_list()
        for index in range(torch.cuda.device_count()):
            capability = torch.cuda.get_device_capability(index)
            if not runs_on(capability, arches):
                name = torch.cuda.get_device_name(index)
                return (
                    f"GPU {index} ({name}, sm_{capability[0]}{capability[1]}) cannot run torch"
                    f" {torch.__version__}, built for {' '.join(arches)}"
                )
    except RuntimeError as error:  # a broken driver or device: CUDA fails to initialise
        first_line = str(error).partition("\n")[0]
        return f"CUDA fails to start ({first_line})"
    return None


def inference_devices(accelerator: str = "auto") -> tuple[str, int]:
    """The accelerator and device count to predict on: every visible GPU if they can run this
    torch build, else the CPU after one loud line saying why; an explicit ``accelerator`` as
    given (one device)."""
    import torch

    if accelerator != "auto":
        return accelerator, 1
    problem = gpu_problem()
    if problem:
        print(f"WARNING: THE GPU IS NOT USED, predicting on the CPU (slow): {problem}", flush=True)
        return "cpu", 1
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ("gpu", count) if count else ("cpu", 1)
