"""Sparsity you dial: multipliers that drive a measured sparsity to a target (a Lagrangian in log space).

A user sets `target_doc_nnz: 64` (or `target_query_nnz`, `target_flops`) instead of a λ: the
regularisers of that side are weighted by `weight × μ`, and after every optimizer step

    e = clip(log(measured / target), −1, 1),   I ← I + rate · e,   log μ = I + gain · e

a proportional-integral controller in log space: the integral I rises while the measured value is above
the target and falls while it is below, by at most `rate` per step, whatever the scale of λ that the
target needs (FLOPS λs span three orders of magnitude); the proportional term damps the overshoot that
the network's lag (momentum, learning rate) would otherwise cause. `measured` is the optimizer step's batch value: average non-zeros per text of that side
as the saved model will produce them (hard-concrete gates at their test-time value), or the batch
FLOPS Σ_j p_j^(q) p_j^(d).

Over the first `ramp_steps` the set point moves geometrically from the first measured value to the
target (the λ warm-up of SPLADE recipes, in target space): the multiplier tracks a slowly moving goal
instead of winding up against a distant one, so it does not overshoot — which matters because terms
pushed below zero, or gates closed, get no ranking gradient to bring them back.
"""

from __future__ import annotations

import math

TARGET_METRICS = {"target_doc_nnz": "d_nnz", "target_query_nnz": "q_nnz", "target_flops": "flops"}


class TargetMultiplier:
    def __init__(self, setting: str, target: float, rate: float = 0.05, ramp_steps: int = 0, gain: float = 1.0,
                 limit: float = 1e4):
        if setting not in TARGET_METRICS:
            raise ValueError(f"unknown target {setting!r}; choose from {sorted(TARGET_METRICS)}")
        if not target > 0:
            raise ValueError(f"{setting} must be > 0, got {target!r}")
        if not rate > 0:
            raise ValueError(f"target_rate must be > 0, got {rate!r}")
        if gain < 0:
            raise ValueError(f"target_gain must be >= 0, got {gain!r}")
        if ramp_steps < 0:
            raise ValueError(f"target_ramp_steps must be >= 0, got {ramp_steps!r}")
        self.setting, self.metric, self.target, self.rate = setting, TARGET_METRICS[setting], float(target), rate
        self.ramp_steps, self.gain = ramp_steps, gain
        self.log_limit = math.log(limit)
        self.integral = 0.0
        self.log_value = 0.0  # μ = 1: the regularisers start at their configured weights
        self.start: float | None = None  # the first measured value, where the ramp begins

    @property
    def value(self) -> float:
        return math.exp(self.log_value)

    def side_applies(self, side: str) -> bool:
        """Which regularisers this multiplier weights: those of its side (FLOPS: every regulariser)."""
        return self.setting == "target_flops" or self.setting == f"target_{side}_nnz"

    def set_point(self, step: int) -> float:
        """The target at optimizer step `step` (0-based): geometric ramp from the first measurement."""
        if self.start is None or self.start <= self.target or step >= self.ramp_steps:
            return self.target
        return self.target * (self.start / self.target) ** (1 - step / self.ramp_steps)

    def update(self, measured: float, step: int) -> float:
        """μ after optimizer step `step` whose batch measured `measured`."""
        if self.start is None:
            self.start = float(measured)
        floor = 1e-3 * self.target
        error = math.log(max(measured, floor) / self.set_point(step))
        error = max(-1.0, min(1.0, error))
        self.integral = max(-self.log_limit, min(self.log_limit, self.integral + self.rate * error))
        self.log_value = max(-self.log_limit, min(self.log_limit, self.integral + self.gain * error))
        return self.value

    def state_dict(self) -> dict:
        return {"setting": self.setting, "target": self.target, "integral": self.integral, "log_value": self.log_value,
                "start": self.start}

    def load_state_dict(self, state: dict) -> None:
        if (state["setting"], state["target"]) != (self.setting, self.target):
            raise ValueError(f"checkpoint was trained towards {state['setting']} = {state['target']}, "
                             f"the config asks for {self.setting} = {self.target}")
        self.integral, self.log_value, self.start = float(state["integral"]), float(state["log_value"]), state["start"]


def target_multipliers(settings: dict, rate: float, ramp_steps: int = 0, gain: float = 1.0) -> list[TargetMultiplier]:
    """The multipliers of a config's `target_*` settings (None = not set); FLOPS excludes per-side targets."""
    chosen = [TargetMultiplier(name, value, rate, ramp_steps, gain) for name, value in settings.items() if value is not None]
    if any(m.setting == "target_flops" for m in chosen) and len(chosen) > 1:
        raise ValueError("target_flops drives every regulariser: combine it with no target_doc_nnz / target_query_nnz")
    return chosen
