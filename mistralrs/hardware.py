"""Target hardware: what an artifact is compiled for, what this machine offers, and whether they match."""
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

GPU_PROBE = "import torch; print('sm_%d%d' % torch.cuda.get_device_capability() if torch.cuda.is_available() else '')"
CPU_ISA_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                 "amx_tile")  # as /proc/cpuinfo spells them


class IncompatibleTarget(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class TargetHardware:
    """`device` is "cpu" or "cuda"; `arch` a CPU architecture or "sm_90"; `requires` ISA flags."""

    device: str
    arch: str
    requires: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.device}:{self.arch}" + (f" (+{','.join(self.requires)})" if self.requires else "")

    def to_dict(self) -> dict:
        return asdict(self) | {"requires": list(self.requires)}

    @classmethod
    def from_dict(cls, d: dict) -> "TargetHardware":
        return cls(d["device"], d["arch"], tuple(d.get("requires", ())))

    @classmethod
    def parse(cls, spec: str) -> "TargetHardware":
        """"cpu" (this CPU's architecture, portable across its vendors), "cpu:x86_64", "cpu:x86_64+avx2", "cuda:sm_90"."""
        device, _, rest = spec.strip().lower().partition(":")
        if device == "cpu":
            arch, *requires = (rest or platform.machine()).split("+")
            return cls("cpu", arch or platform.machine(), tuple(requires))
        if device == "cuda" and rest.startswith("sm_"):
            return cls("cuda", rest)
        raise ValueError(f"unknown target {spec!r}; use cpu, cpu:<arch>[+isa...] or cuda:sm_<NN>")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def host_cpu() -> TargetHardware:
    flags = cpu_flags()
    return TargetHardware("cpu", platform.machine(), tuple(f for f in CPU_ISA_FLAGS if f in flags))


def host_gpu() -> TargetHardware | None:
    """The first CUDA device as "cuda:sm_NN", or None (torch is imported only for CUDA targets).

    A process that does not use CUDA yet asks a child process: initializing CUDA here would break the processes this
    one forks later (the server's master verifies the artifact, then forks the worker that runs it).
    """
    import torch

    if not torch.cuda.is_initialized():
        probe = subprocess.run([sys.executable, "-c", GPU_PROBE], capture_output=True, text=True, timeout=300)
        arch = probe.stdout.strip()
        return TargetHardware("cuda", arch) if probe.returncode == 0 and arch else None
    major, minor = torch.cuda.get_device_capability()
    return TargetHardware("cuda", f"sm_{major}{minor}")


def check_runs_here(target: TargetHardware, host: TargetHardware | None = None) -> None:
    host = host or (host_gpu() if target.device == "cuda" else host_cpu())
    if host is None:
        raise IncompatibleTarget(
            f"artifact was compiled for target {target.label}, but this machine ({host_cpu().label}) has no CUDA GPU"
        )
    if target.device != host.device or target.arch != host.arch:
        raise IncompatibleTarget(f"artifact was compiled for target {target.label}, but this machine is {host.label}")
    missing = set(target.requires) - set(host.requires)
    if missing:
        raise IncompatibleTarget(
            f"artifact was compiled for target {target.label}, but this machine ({host.label}) lacks {', '.join(sorted(missing))}"
        )
