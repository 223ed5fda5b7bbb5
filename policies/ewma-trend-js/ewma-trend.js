// `ewma-trend` in JavaScript: the same predictor as `policies/ewma-trend`.
//
// The EWMA of each metric plus the least-squares trend of its last `window`
// samples, projected ahead, with the EWMA's lag on a ramp added back. Every
// arithmetic step is done in the same order as the Rust reference so the
// two agree to the last bits.
//
// Built by `scripts/build-policies` with componentize-js, which generates the
// bindings from `wit/` (world `predictor`): the world's exports are this
// module's exported functions, records are plain objects with camelCase
// fields, and a thrown string is the `err` of a `result`.

// Most points one forecast may hold, whatever horizon and step are asked.
const MAX_POINTS = 1000;
const FIELDS = ["alpha", "window", "horizonMs", "metrics"];

function parseConfig(text) {
  let raw;
  try {
    raw = JSON.parse(text.trim() === "" ? "{}" : text);
  } catch (e) {
    throw `invalid config: ${e.message}`;
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw "invalid config: expected a JSON object";
  }
  for (const key of Object.keys(raw)) {
    if (!FIELDS.includes(key)) {
      throw `invalid config: unknown field \`${key}\`, expected one of ${FIELDS.join(", ")}`;
    }
  }
  return {
    alpha: number(raw, "alpha", 0.5),
    window: count(raw, "window", 8),
    horizonMs: number(raw, "horizonMs", 0),
    metrics: names(raw, "metrics"),
  };
}

function number(raw, key, fallback) {
  const value = key in raw ? raw[key] : fallback;
  if (typeof value !== "number") {
    throw `invalid config: invalid type for \`${key}\`, expected a number`;
  }
  return value;
}

function count(raw, key, fallback) {
  const value = key in raw ? raw[key] : fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw `invalid config: invalid value for \`${key}\`, expected a non-negative integer`;
  }
  return value;
}

function names(raw, key) {
  const value = raw[key];
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw `invalid config: invalid type for \`${key}\`, expected a list of strings`;
  }
  return value;
}

function validate(config) {
  if (!(config.alpha > 0 && config.alpha <= 1)) {
    throw `\`alpha\` must be in (0, 1], got ${config.alpha}`;
  }
  if (config.window < 2) {
    throw `\`window\` must be at least 2, got ${config.window}`;
  }
  if (!(Number.isFinite(config.horizonMs) && config.horizonMs >= 0)) {
    throw `\`horizonMs\` must be ≥ 0, got ${config.horizonMs}`;
  }
}

function mean(values) {
  let total = 0;
  for (const v of values) total += v;
  return total / values.length;
}

// Least-squares slope of [x, y] points, centred first; 0 when it is undefined.
function slope(points) {
  if (points.length < 2) return 0;
  const meanX = mean(points.map((p) => p[0]));
  const meanY = mean(points.map((p) => p[1]));
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    const dx = x - meanX;
    sxy += dx * (y - meanY);
    sxx += dx * dx;
  }
  return sxx === 0 ? 0 : sxy / sxx;
}

function project(config, history, now, step, n) {
  const samples = history.samples;
  if (samples.length === 0) return [];
  let level = samples[0].value;
  for (let i = 1; i < samples.length; i++) {
    level = config.alpha * samples[i].value + (1 - config.alpha) * level;
  }
  const tail = samples.slice(Math.max(0, samples.length - config.window));
  const trend = slope(tail.map((s) => [s.timeMs, s.value]));
  const last = samples[samples.length - 1].timeMs;
  const spacing = tail.length > 1 ? (last - tail[0].timeMs) / (tail.length - 1) : 0;
  const lag = (spacing * (1 - config.alpha)) / config.alpha;
  const points = [];
  for (let k = 1; k <= n; k++) {
    const t = now + k * step;
    const value = level + trend * (t - last + lag);
    // Like Rust's f64::max(0.0): a NaN becomes 0 too.
    points.push({ timeMs: t, value: value > 0 ? value : 0 });
  }
  return points;
}

function pointCount(horizon, step) {
  if (!(horizon > 0 && step > 0)) return 0;
  const ratio = horizon / step;
  if (ratio >= MAX_POINTS) return MAX_POINTS;
  return Math.max(1, Math.ceil(ratio));
}

export function validateConfig(text) {
  validate(parseConfig(text));
}

export function forecast(request) {
  const config = parseConfig(request.config);
  validate(config);
  const horizon = Math.max(request.horizonMs, config.horizonMs);
  const step = request.stepMs > 0 ? request.stepMs : horizon;
  const n = pointCount(horizon, step);
  const forecasts = request.histories
    .filter((h) => config.metrics === null || config.metrics.includes(h.name))
    .map((h) => ({ name: h.name, points: project(config, h, request.nowMs, step, n) }));
  return { forecasts, state: undefined };
}
