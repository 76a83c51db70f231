"""The interface every backend target implements."""
from abc import ABC, abstractmethod
from pathlib import Path

from ...hardware import TargetHardware
from ..ir import Graph


class UnsupportedTarget(ValueError):
    pass


class Backend(ABC):
    name: str
    consumes_checkpoint = False  # True: lower_checkpoint() exports model_zoo modules instead of lowering the IR

    @abstractmethod
    def version(self) -> str: ...

    def options(self) -> dict:
        """Backend-specific compile options, recorded in the manifest."""
        return {}

    @abstractmethod
    def check_target(self, target: TargetHardware) -> None:
        """Raise UnsupportedTarget if this backend cannot compile for `target`."""

    def resolve_target(self, target: TargetHardware) -> TargetHardware:
        """The target the artifact records (a backend may pin down what running it requires)."""
        return target

    def details(self) -> dict:
        """What the manifest records about how the backend compiled (not compile options)."""
        return {}

    @abstractmethod
    def lower(self, graph: Graph, out_dir: Path) -> list[str]:
        """Write the graph files into `out_dir`; return their names relative to it."""

    def lower_checkpoint(self, checkpoint, cfg, scheme, out_dir: Path) -> list[str]:
        """For backends with `consumes_checkpoint`: write the graph files from the checkpoint itself."""
        raise NotImplementedError
