"""`ewma-trend` in Python: the same predictor as `policies/ewma-trend`.

The EWMA of each metric plus the least-squares trend of its last `window`
samples, projected ahead, with the EWMA's lag on a ramp added back.
Every arithmetic step is done in the same order as the Rust reference so
the two agree to the last bits (plain loops, not `sum()`, which compensates
rounding since CPython 3.12 and would not).

Built by `scripts/build-policies` with componentize-py; the `wit_world`
bindings it imports are generated from `wit/` at build time.
"""

import json
import math

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

# Most points one forecast may hold, whatever horizon and step are asked.
MAX_POINTS = 1000
FIELDS = ("alpha", "window", "horizonMs", "metrics")
USIZE_MAX = 2**64 - 1


class Config:
    """The parsed configuration; field rules match the Rust reference's serde types."""

    def __init__(self, text):
        if not text.strip():
            text = "{}"
        try:
            raw = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except ValueError as e:
            raise Err(f"invalid config: {e}")
        if not isinstance(raw, dict):
            raise Err("invalid config: expected a JSON object")
        for key in raw:
            if key not in FIELDS:
                raise Err(f"invalid config: unknown field `{key}`, expected one of {', '.join(FIELDS)}")
        self.alpha = _number(raw, "alpha", 0.5)
        self.window = _count(raw, "window", 8)
        self.horizon_ms = _number(raw, "horizonMs", 0.0)
        self.metrics = _names(raw, "metrics")

    def validate(self):
        if not (self.alpha > 0.0 and self.alpha <= 1.0):
            raise Err(f"`alpha` must be in (0, 1], got {self.alpha}")
        if self.window < 2:
            raise Err(f"`window` must be at least 2, got {self.window}")
        if not (math.isfinite(self.horizon_ms) and self.horizon_ms >= 0.0):
            raise Err(f"`horizonMs` must be ≥ 0, got {self.horizon_ms}")


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate field `{key}`")
        seen[key] = value
    return seen


def _no_constant(name):
    raise ValueError(f"`{name}` is not JSON")


def _number(raw, key, default):
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Err(f"invalid config: invalid type for `{key}`, expected a number")
    value = float(value)
    if not math.isfinite(value):
        raise Err(f"invalid config: `{key}` is out of range")
    return value


def _count(raw, key, default):
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= USIZE_MAX:
        raise Err(f"invalid config: invalid value for `{key}`, expected a non-negative integer")
    return value


def _names(raw, key):
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Err(f"invalid config: invalid type for `{key}`, expected a list of strings")
    return value


def _mean(values):
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def _slope(points):
    """Least-squares slope of (x, y) points, centred first; 0 when it is undefined."""
    if len(points) < 2:
        return 0.0
    mean_x = _mean([p[0] for p in points])
    mean_y = _mean([p[1] for p in points])
    sxy = 0.0
    sxx = 0.0
    for x, y in points:
        dx = x - mean_x
        sxy += dx * (y - mean_y)
        sxx += dx * dx
    if sxx == 0.0:
        return 0.0
    return sxy / sxx


def _project(config, history, now, step, n):
    samples = history.samples
    if not samples:
        return []
    level = None
    for s in samples:
        level = s.value if level is None else config.alpha * s.value + (1.0 - config.alpha) * level
    tail = samples[max(0, len(samples) - config.window):]
    slope = _slope([(s.time_ms, s.value) for s in tail])
    last = samples[-1].time_ms
    spacing = (last - tail[0].time_ms) / (len(tail) - 1) if len(tail) > 1 else 0.0
    lag = spacing * (1.0 - config.alpha) / config.alpha
    points = []
    for k in range(1, n + 1):
        t = now + float(k) * step
        value = level + slope * (t - last + lag)
        # Like Rust's f64::max(0.0): a NaN becomes 0 too.
        points.append(types.ForecastPoint(time_ms=t, value=value if value > 0.0 else 0.0))
    return points


def _point_count(horizon, step):
    if not (horizon > 0.0 and step > 0.0):
        return 0
    ratio = horizon / step
    if ratio >= MAX_POINTS:
        return MAX_POINTS
    return max(1, math.ceil(ratio))


class WitWorld(wit_world.WitWorld):
    def validate_config(self, config: str) -> None:
        Config(config).validate()

    def forecast(self, request: types.ForecastRequest) -> types.ForecastResponse:
        config = Config(request.config)
        config.validate()
        horizon = max(request.horizon_ms, config.horizon_ms)
        step = request.step_ms if request.step_ms > 0.0 else horizon
        n = _point_count(horizon, step)
        forecasts = [
            types.MetricForecast(name=h.name, points=_project(config, h, request.now_ms, step, n))
            for h in request.histories
            if config.metrics is None or h.name in config.metrics
        ]
        return types.ForecastResponse(forecasts=forecasts, state=None)
