"""Run an ONNX Runtime artifact: IO-bound KV buffers that GroupQueryAttention updates in place; the initializers the
artifact stores as fp16 are widened back to fp32 here (compiler/targets/onnx_fp16_storage.py)."""
import logging

import numpy as np
import onnxruntime as ort

from ..artifact import Artifact, ArtifactError
from ..memory import Populator
from .base import ModelExecutor
from .native_decode import NativeDecoder

logger = logging.getLogger("mistralrs.runtime")


class OnnxRuntimeExecutor(ModelExecutor):
    def __init__(self, artifact: Artifact, max_slots: int, max_seq_len: int, threads: int):
        cfg = artifact.config
        self.max_slots, self.max_seq_len = max_slots, max_seq_len
        options = _session_options(threads)
        self._widened = _widened_initializers(artifact)  # the session computes on these buffers: keep them alive
        if self._widened:
            options.add_external_initializers(list(self._widened), list(self._widened.values()))
        self.session = ort.InferenceSession(str(artifact.path(artifact.manifest["backend"]["graph_files"][0])),
                                            options, providers=["CPUExecutionProvider"])
        shape = (max_slots, cfg.num_kv_heads, max_seq_len, cfg.head_dim)
        self.kv = {f"{kind}_{layer}": np.zeros(shape, np.float32)
                   for layer in range(cfg.num_layers) for kind in ("key", "value")}
        self._bound_kv: dict[tuple[int, int], ort.IOBinding] = {}
        # slot by slot, so the low slots every batch uses are ready first
        self.populator = Populator([buffer[slot] for slot in range(max_slots) for buffer in self.kv.values()],
                                   "KV cache")
        native = artifact.manifest["backend"].get("details", {}).get("native_decode")
        self.native = NativeDecoder(artifact, native, self.kv, max_slots, threads) if native else None
        logger.info("onnxruntime session ready: %d threads, KV cache %d slots x %d tokens (%.0f MB reserved)%s",
                    threads, max_slots, max_seq_len, sum(a.nbytes for a in self.kv.values()) / 1e6,
                    ", native decode" if self.native else "")

    def forward(self, first_slot: int, token_ids: np.ndarray, past_lengths: np.ndarray) -> np.ndarray:
        if token_ids.shape[1] == 1 and self.native is not None:
            return self.native.step(first_slot, token_ids[:, 0], past_lengths)
        return self._run_graph(first_slot, token_ids, past_lengths)

    @property
    def decodes_differently(self) -> bool:
        return self.native is not None

    def forward_prompt_end(self, first_slot: int, token_ids: np.ndarray, past_lengths: np.ndarray) -> np.ndarray:
        return self._run_graph(first_slot, token_ids, past_lengths)

    def _run_graph(self, first_slot: int, token_ids: np.ndarray, past_lengths: np.ndarray) -> np.ndarray:
        batch, seq = token_ids.shape
        binding = self._binding(first_slot, batch)
        seqlens = (past_lengths + seq - 1).astype(np.int32)
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(token_ids, dtype=np.int64))
        binding.bind_cpu_input("seqlens_k", seqlens)
        binding.bind_cpu_input("total_sequence_length", np.array(seqlens.max() + 1, np.int32))
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy().copy()  # the output buffer is reused by the next run

    def _binding(self, first_slot: int, batch: int) -> ort.IOBinding:
        """The KV rows of a (first_slot, batch) window, bound as both past and present (shared buffer)."""
        key = (first_slot, batch)
        if key not in self._bound_kv:
            binding = self.session.io_binding()
            binding.bind_output("logits")  # first, so it is output 0
            for name, buffer in self.kv.items():
                value = ort.OrtValue.ortvalue_from_numpy(buffer[first_slot:first_slot + batch])
                binding.bind_ortvalue_input("past_" + name, value)
                binding.bind_ortvalue_output("present_" + name, value)
            self._bound_kv[key] = binding
        return self._bound_kv[key]

    def populate_step(self) -> bool:
        return self.populator.step()

    def copy_slot(self, src: int, dst: int, length: int) -> None:
        for buffer in self.kv.values():
            buffer[dst, :, :length] = buffer[src, :, :length]


def _widened_initializers(artifact: Artifact) -> dict[str, ort.OrtValue]:
    """The manifest's fp16-stored initializers, widened to fp32 (exact: they were fp16 values), by name."""
    stored = artifact.manifest["backend"].get("details", {}).get("fp16_initializers")
    if not stored:
        return {}
    from safetensors.numpy import load_file

    halves = load_file(artifact.path(stored["file"]))
    if sorted(halves) != sorted(stored["names"]):
        raise ArtifactError(f"{stored['file']} in {artifact.root} does not hold the fp16 initializers its manifest "
                            "lists")
    return {name: ort.OrtValue.ortvalue_from_numpy(halves.pop(name).astype(np.float32)) for name in stored["names"]}


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimized at compile time
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options
