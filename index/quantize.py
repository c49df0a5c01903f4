"""8-bit weight quantisation shared by every index type.

One global scale per index: `q = clip(round(w / scale), 1, 255)` with `scale = max(w) / 255`, so the
largest weight maps to 255 and every stored (non-zero) weight stays non-zero. De-quantised weight is
`q * scale`; the rounding error of any weight is at most `scale / 2`, except weights below `scale / 2`,
which are raised to `scale` (so they are never dropped).
"""

from __future__ import annotations

import numpy as np

LEVELS = 255


def quantization_scale(max_weight: float) -> float:
    """Scale that maps `max_weight` to the top level (1.0 for an all-zero index)."""
    return float(max_weight) / LEVELS if max_weight > 0 else 1.0


def quantize(weights: np.ndarray, scale: float) -> np.ndarray:
    """Quantise non-negative weights to uint8 levels 1..255 (callers pass only the non-zeros)."""
    levels = np.rint(np.asarray(weights, dtype=np.float64) / scale)
    return np.clip(levels, 1, LEVELS).astype(np.uint8)


def dequantize(levels: np.ndarray, scale: float) -> np.ndarray:
    return levels.astype(np.float32) * np.float32(scale)
