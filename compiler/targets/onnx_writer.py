"""Collects ONNX nodes and streams initializers straight into one external-data file."""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

MS_DOMAIN = "com.microsoft"
OPSETS = [helper.make_opsetid("", 21), helper.make_opsetid(MS_DOMAIN, 1)]
IR_VERSION = 10  # onnxruntime 1.2x reads up to IR 10/11; onnx 1.23 would default to 14
ALIGNMENT = 4096


class OnnxWriter:
    def __init__(self, data_path: Path):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.data_path = data_path
        self._data = open(data_path, "wb")
        self.names: set[str] = set()
        self._counter = 0

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}__{self._counter}"

    def node(self, op: str, inputs: list[str], outputs: list[str] | None = None, domain: str = "", **attrs) -> list[str]:
        outputs = outputs or [self.fresh(op)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=self.fresh(op + "_node"), domain=domain, **attrs))
        return outputs

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Add `array` once under `name` (a second call with the same name reuses it)."""
        if name in self.names:
            return name
        self.names.add(name)
        array = np.asarray(array, order="C")
        if array.nbytes < 1024:
            self.initializers.append(onnx.numpy_helper.from_array(array, name))
            return name
        offset = self._align()
        self._data.write(array.tobytes())
        tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.data_path.name), ("offset", offset), ("length", array.nbytes)):
            tensor.external_data.add(key=key, value=str(value))
        self.initializers.append(tensor)
        return name

    def constant(self, array: np.ndarray) -> str:
        return self.initializer(self.fresh("const"), np.asarray(array))

    def _align(self) -> int:
        offset = self._data.tell()
        padding = -offset % ALIGNMENT
        self._data.write(b"\0" * padding)
        return offset + padding

    def save(self, path: Path, inputs: list, outputs: list) -> None:
        self._data.close()
        graph = helper.make_graph(self.nodes, "decoder", inputs, outputs, initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION, producer_name="mistralrs-compile")
        onnx.save_model(model, path)
