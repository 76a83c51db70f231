"""Run an inductor artifact: AOTInductor packages over a KV cache on the artifact's device.

The cache is slot-major, [max_slots, L, KV, max_seq_len, D] per K and V, so the rows of a batch window
first_slot .. first_slot + B - 1 are one contiguous view the packages update in place. On CUDA each decode window
is captured once as a CUDA graph and replayed (nano-vllm's decode path); prefill runs the package directly. A
batch-1 decode uses the artifact's `decode_row` package where it has one (CUDA artifacts: every matmul one fused
ops/gemv.py kernel).
"""
import logging

import numpy as np
import torch

from ..artifact import Artifact, ArtifactError
from .base import ModelExecutor

logger = logging.getLogger("mistralrs.runtime")

MAX_GRAPHS = 64


class InductorExecutor(ModelExecutor):
    def __init__(self, artifact: Artifact, max_slots: int, max_seq_len: int, threads: int,
                 use_cuda_graphs: bool = True, share_weights: bool = True):
        options, cfg = artifact.manifest["backend"]["options"], artifact.config
        if options["torch"] != torch.__version__:
            raise ArtifactError(f"{artifact.root} was compiled by torch {options['torch']}; .pt2 packages run only "
                                f"under that version, this is torch {torch.__version__}: recompile it here")
        self.max_slots, self.max_seq_len = max_slots, max_seq_len
        self.device = torch.device("cuda" if artifact.target.device == "cuda" else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.weights = _load_weights(artifact.path(options["weights"]), self.device) if options["weights"] else None
        entry = options["entry_points"]
        self.use_cuda_graphs = use_cuda_graphs and self.device.type == "cuda"
        load = {"weights": self.weights, "single_threaded": self.use_cuda_graphs, "share_weights": share_weights}
        self.prefill = _load_package(artifact.path(entry["prefill"]), **load)
        self.decode = _load_package(artifact.path(entry["decode"]), **load)
        self.decode_row = _load_package(artifact.path(entry["decode_row"]), **load) if "decode_row" in entry else None
        dtype = getattr(torch, options["dtype"])
        shape = (max_slots, cfg.num_layers, cfg.num_kv_heads, max_seq_len, cfg.head_dim)
        self.k_cache = torch.zeros(shape, dtype=dtype, device=self.device)
        self.v_cache = torch.zeros(shape, dtype=dtype, device=self.device)
        self._graphs: dict[tuple[int, int], DecodeGraph] = {}
        logger.info("inductor executor on %s: KV cache %d slots x %d tokens (%.0f MB)", self.device, max_slots,
                    max_seq_len, 2 * self.k_cache.numel() * self.k_cache.element_size() / 1e6)

    def forward(self, first_slot: int, token_ids: np.ndarray, past_lengths: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(np.ascontiguousarray(token_ids, dtype=np.int64))
        past = torch.from_numpy(np.ascontiguousarray(past_lengths, dtype=np.int64))
        return self.forward_tensor(first_slot, ids, past).cpu().numpy()

    def forward_tensor(self, first_slot: int, ids: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        """forward on tensors, logits left on the device (the benchmark's greedy loop stays on the GPU)."""
        batch, seq = ids.shape
        if first_slot + batch > self.max_slots or int(past.max()) + seq > self.max_seq_len:
            raise ValueError(f"window of {batch} slots at {first_slot} with {int(past.max()) + seq} positions exceeds "
                             f"the cache ({self.max_slots} slots x {self.max_seq_len})")
        ids, past = ids.to(self.device, non_blocking=True), past.to(self.device, non_blocking=True)
        window = slice(first_slot, first_slot + batch)
        if seq > 1:
            return self.prefill(ids, past, self.k_cache[window], self.v_cache[window])
        if not self.use_cuda_graphs:
            return self._decode_package(batch)(ids, past, self.k_cache[window], self.v_cache[window])
        return self._decode_graph(first_slot, batch).run(ids, past)

    def _decode_package(self, batch: int):
        return self.decode_row if batch == 1 and self.decode_row is not None else self.decode

    def _decode_graph(self, first_slot: int, batch: int) -> "DecodeGraph":
        key = (first_slot, batch)
        if key not in self._graphs:
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            window = slice(first_slot, first_slot + batch)
            self._graphs[key] = DecodeGraph(self._decode_package(batch), self.k_cache[window], self.v_cache[window])
        return self._graphs[key]

    def copy_slot(self, src: int, dst: int, length: int) -> None:
        self.k_cache[dst, :, :, :length] = self.k_cache[src, :, :, :length]
        self.v_cache[dst, :, :, :length] = self.v_cache[src, :, :, :length]


class DecodeGraph:
    """One decode call over a fixed cache window, captured as a CUDA graph; inputs are copied into static buffers."""

    def __init__(self, decode, k_cache: torch.Tensor, v_cache: torch.Tensor):
        batch, device = k_cache.shape[0], k_cache.device
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        # a warm-up at the last cache position writes only where no sequence has attended yet
        self.past = torch.full((batch,), k_cache.shape[3] - 1, dtype=torch.long, device=device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            decode(self.ids, self.past, k_cache, v_cache)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = decode(self.ids, self.past, k_cache, v_cache)

    def run(self, ids: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(ids)
        self.past.copy_(past)
        self.graph.replay()
        return self.logits


def _load_weights(path, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def _load_package(path, weights: dict[str, torch.Tensor] | None, single_threaded: bool, share_weights: bool):
    """share_weights: the package uses the executor's weight tensors (user-managed) instead of its own copy."""
    # run_single_threaded drops the runner's own stream synchronisation, which CUDA graph capture rejects
    model = torch._inductor.aoti_load_package(str(path), run_single_threaded=single_threaded)
    if weights is None:  # the package embeds its weights
        return model
    names = model.get_constant_fqns()
    missing = sorted(set(names) - set(weights))
    if missing:
        raise ArtifactError(f"{path.name} needs weights missing from the artifact: {', '.join(missing[:5])}")
    model.load_constants({name: weights[name] for name in names}, check_full_update=True, user_managed=share_weights)
    return model
