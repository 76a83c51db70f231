"""Compact storage of the ONNX target: exactly-fp16 fp32 initializers stored as fp16, widened back at load."""
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from safetensors.numpy import load_file
from tiny_models import executor_for

from mistralrs.artifact_layout import MANIFEST
from mistralrs.compiler.targets.onnx_fp16_storage import FP16_FILE, PLACEHOLDER, store_exact_fp16
from mistralrs.compiler.targets.onnx_writer import OnnxWriter
from mistralrs.runtime.artifact import ArtifactError, open_artifact


def external(tensor: TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def save_matmul_model(tmp_path, w_is_fp16: bool = True):
    """y = (x @ w + x @ b) * scale: w exactly fp16 (or not), b not, and a small exact `scale` kept inline."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 32)).astype(np.float32)
    arrays = {"w": w.astype(np.float16).astype(np.float32) if w_is_fp16 else w,
              "b": rng.normal(size=(64, 32)).astype(np.float32),
              "scale": np.full((1, 32), 0.5, np.float32)}
    writer = OnnxWriter(tmp_path / "model.onnx.data")
    for name, array in arrays.items():
        writer.initializer(name, array)
    product = writer.node("MatMul", ["x", "w"])[0]
    writer.node("Mul", [writer.node("Add", [product, writer.node("MatMul", ["x", "b"])[0]])[0], "scale"], ["y"])
    writer.save(tmp_path / "model.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])])
    return tmp_path / "model.onnx", arrays


def run(path, x: np.ndarray, widened: dict[str, np.ndarray] | None = None) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in (widened or {}).values()]
    if widened:
        options.add_external_initializers(list(widened), values)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_exact_initializers_round_trip_through_fp16(tmp_path):
    path, arrays = save_matmul_model(tmp_path)
    x = np.random.default_rng(1).normal(size=(1, 64)).astype(np.float32)
    before = run(path, x)
    data_bytes = (path.parent / "model.onnx.data").stat().st_size

    assert store_exact_fp16(path, "model.onnx.data") == ["w"]
    halves = load_file(path.parent / FP16_FILE)
    assert list(halves) == ["w"] and halves["w"].dtype == np.float16
    assert (path.parent / "model.onnx.data").stat().st_size < data_bytes
    tensors = {t.name: t for t in onnx.load(str(path), load_external_data=False).graph.initializer}
    assert tensors["w"].data_type == TensorProto.FLOAT and external(tensors["w"])["location"] == PLACEHOLDER
    assert external(tensors["b"])["location"] == "model.onnx.data"
    assert tensors["scale"].data_location != TensorProto.EXTERNAL

    with pytest.raises(Exception, match=PLACEHOLDER):  # nothing reads the placeholder: it does not exist
        run(path, x)
    after = run(path, x, {"w": halves["w"].astype(np.float32)})
    assert np.array_equal(after, before)
    np.testing.assert_allclose(after, (x @ arrays["w"] + x @ arrays["b"]) * 0.5, rtol=1e-5, atol=1e-5)


def test_nothing_exact_leaves_the_model_alone(tmp_path):
    path, _ = save_matmul_model(tmp_path, w_is_fp16=False)
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    assert store_exact_fp16(path, "model.onnx.data") == []
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before


@pytest.fixture(scope="module")
def q4k_artifact(tiny_artifact):
    return tiny_artifact("llama-untied", isq="Q4K")


def test_quantized_artifact_stores_its_scales_and_offsets_in_fp16(q4k_artifact):
    manifest = open_artifact(q4k_artifact).manifest
    stored = manifest["backend"]["details"]["fp16_initializers"]
    assert stored["file"] == FP16_FILE
    assert FP16_FILE in manifest["files"] and FP16_FILE in manifest["backend"]["graph_files"]
    assert any(name.endswith(".scales") for name in stored["names"])
    assert any(name.endswith(".block_constant") for name in stored["names"])
    assert sorted(load_file(q4k_artifact / FP16_FILE)) == sorted(stored["names"])
    graph = onnx.load(str(q4k_artifact / "model.onnx"), load_external_data=False).graph
    declared = {t.name: t for t in graph.initializer}
    assert all(external(declared[name])["location"] == PLACEHOLDER for name in stored["names"])


def test_executor_refuses_an_fp16_file_its_manifest_does_not_describe(tmp_path, q4k_artifact):
    copy = shutil.copytree(q4k_artifact, tmp_path / "artifact")
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["backend"]["details"]["fp16_initializers"]["names"].pop()
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"{FP16_FILE} .* does not hold the fp16 initializers its manifest lists"):
        executor_for(copy)
