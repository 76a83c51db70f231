"""Open a compiled artifact: read its manifest, verify every file's checksum and the target hardware."""
import json
from dataclasses import dataclass
from pathlib import Path

from ..artifact_layout import GENERATION_CONFIG, MANIFEST, READABLE_FORMAT_VERSIONS, TOKENIZER_DIR, sha256_file
from ..hardware import TargetHardware, check_runs_here
from ..model_zoo.config import DecoderConfig


class ArtifactError(RuntimeError):
    pass


@dataclass(slots=True)
class Artifact:
    root: Path
    manifest: dict
    config: DecoderConfig

    @property
    def name(self) -> str:
        return self.manifest["model"]["name"]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]["name"]

    @property
    def target(self) -> TargetHardware:
        return TargetHardware.from_dict(self.manifest["target"])

    @property
    def isq(self) -> str:
        return (self.manifest["isq"] or {}).get("name", "F32")

    @property
    def max_context(self) -> int:
        return self.manifest["model"]["max_context"]

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / TOKENIZER_DIR

    @property
    def generation_config(self) -> dict:
        return json.loads((self.root / GENERATION_CONFIG).read_text())

    def path(self, name: str) -> Path:
        return self.root / name


def open_artifact(root: str | Path, verify: bool = True) -> Artifact:
    root = Path(root)
    manifest = _read_manifest(root)
    if verify:
        verify_files(root, manifest["files"])
    check_runs_here(TargetHardware.from_dict(manifest["target"]))
    return Artifact(root, manifest, DecoderConfig.from_dict(manifest["model"]["config"]))


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{root} is not a compiled artifact: {MANIFEST} is missing (run `mistralrs compile` first)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is corrupt: {e}") from None
    version = manifest.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        readable = ", ".join(map(str, READABLE_FORMAT_VERSIONS))
        raise ArtifactError(f"{path} has format version {version}, this runtime reads {readable}")
    return manifest


def verify_files(root: Path, expected: dict[str, str]) -> None:
    for name, digest in expected.items():
        path = root / name
        if not path.is_file():
            raise ArtifactError(f"artifact file {name} is missing from {root}")
        if sha256_file(path) != digest:
            raise ArtifactError(f"artifact file {name} failed its checksum (corrupted or modified): {path}")
