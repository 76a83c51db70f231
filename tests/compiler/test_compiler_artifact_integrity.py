"""open_artifact refuses an artifact whose files changed after compiling, or that targets other hardware."""
import json
import platform
import shutil

import pytest

from mistralrs.artifact_layout import MANIFEST
from mistralrs.hardware import IncompatibleTarget, host_cpu
from mistralrs.runtime.artifact import ArtifactError, open_artifact

SERVABLE_FILES = ["model.onnx", "model.onnx.data", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
                  "generation_config.json"]


@pytest.fixture(scope="module")
def artifact(tiny_artifact):
    return tiny_artifact("llama-untied")


@pytest.fixture
def copy(tmp_path, artifact):
    return shutil.copytree(artifact, tmp_path / "artifact")


def edit_manifest(root, **values) -> None:
    manifest = json.loads((root / MANIFEST).read_text())
    (root / MANIFEST).write_text(json.dumps(manifest | values))


def test_manifest_lists_every_servable_file(artifact):
    files = open_artifact(artifact).manifest["files"]
    assert set(SERVABLE_FILES) <= set(files)
    assert all((artifact / name).stat().st_size for name in files)


def assert_flipped_byte_is_caught(artifact_dir, name: str) -> None:
    path = artifact_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match=f"artifact file {name} failed its checksum"):
        open_artifact(artifact_dir)


@pytest.mark.parametrize("name", SERVABLE_FILES)
def test_one_flipped_byte_is_caught(copy, name):
    assert_flipped_byte_is_caught(copy, name)


@pytest.mark.parametrize("name", ["model.onnx.data", "model.fp16.safetensors"])
def test_one_flipped_byte_in_a_quantized_artifact_is_caught(tmp_path, tiny_artifact, name):
    """A quantized artifact also stores its exactly-fp16 tables as fp16, in a file of their own."""
    copy = shutil.copytree(tiny_artifact("llama-untied", isq="Q4K"), tmp_path / "artifact")
    assert_flipped_byte_is_caught(copy, name)


def test_missing_file_is_named(copy):
    (copy / "model.onnx.data").unlink()
    with pytest.raises(ArtifactError, match="artifact file model.onnx.data is missing"):
        open_artifact(copy)


def test_format_1_still_opens_and_an_unknown_format_is_refused(copy):
    edit_manifest(copy, format_version=1)  # format 2 added fp16 storage; a format 1 artifact has none
    open_artifact(copy)
    edit_manifest(copy, format_version=99)
    with pytest.raises(ArtifactError, match="has format version 99, this runtime reads 1, 2"):
        open_artifact(copy)


def test_missing_manifest(copy):
    (copy / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match=f"is not a compiled artifact: {MANIFEST} is missing"):
        open_artifact(copy)


def test_corrupt_manifest(copy):
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match=f"{MANIFEST} is corrupt"):
        open_artifact(copy)


def other_cpu_arch() -> str:
    return "aarch64" if platform.machine() != "aarch64" else "x86_64"


@pytest.mark.parametrize("target, label", [
    ({"device": "cuda", "arch": "sm_90", "requires": []}, "cuda:sm_90"),
    ({"device": "cpu", "arch": other_cpu_arch(), "requires": []}, f"cpu:{other_cpu_arch()}"),
])
def test_other_target_names_both_targets(copy, target, label):
    edit_manifest(copy, target=target)
    with pytest.raises(IncompatibleTarget, match=f"compiled for target {label}") as error:
        open_artifact(copy)
    assert host_cpu().label in str(error.value)


def test_missing_cpu_feature_is_named(copy):
    edit_manifest(copy, target={"device": "cpu", "arch": platform.machine(), "requires": ["no_such_isa"]})
    with pytest.raises(IncompatibleTarget, match="lacks no_such_isa"):
        open_artifact(copy)
