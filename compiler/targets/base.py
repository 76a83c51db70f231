"""The interface every backend target implements."""
from abc import ABC, abstractmethod
from pathlib import Path

from ...hardware import TargetHardware
from ..ir import Graph


class UnsupportedTarget(ValueError):
    pass


class Backend(ABC):
    name: str

    @abstractmethod
    def version(self) -> str: ...

    def options(self) -> dict:
        """Backend-specific compile options, recorded in the manifest."""
        return {}

    @abstractmethod
    def check_target(self, target: TargetHardware) -> None:
        """Raise UnsupportedTarget if this backend cannot compile for `target`."""

    @abstractmethod
    def lower(self, graph: Graph, out_dir: Path) -> list[str]:
        """Write the graph files into `out_dir`; return their names relative to it."""
