"""Rotary position embedding tables (default, linear and llama3 scaling)."""
import math

import numpy as np

from .config import DecoderConfig


def inverse_frequencies(cfg: DecoderConfig) -> np.ndarray:
    exponents = np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta**exponents)
    scaling = cfg.rope_scaling
    if scaling is None:
        return inv_freq
    if scaling["rope_type"] == "linear":
        return inv_freq / scaling["factor"]
    return _llama3_scaled(inv_freq, scaling)


def _llama3_scaled(inv_freq: np.ndarray, s: dict) -> np.ndarray:
    factor, low, high = s["factor"], s.get("low_freq_factor", 1.0), s.get("high_freq_factor", 4.0)
    old_context = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    low_wavelen, high_wavelen = old_context / low, old_context / high
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(is_medium, smoothed, scaled)


def cos_sin_tables(cfg: DecoderConfig, num_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin: [num_positions, head_dim / 2] float32 (the half-rotation layout HF uses)."""
    angles = np.outer(np.arange(num_positions, dtype=np.float64), inverse_frequencies(cfg))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
