//! `ewma-trend` in Zig: the same predictor as `policies/ewma-trend`.
//!
//! The EWMA of each metric plus the least-squares trend of its last `window`
//! samples, projected ahead, with the EWMA's lag on a ramp added back. Every
//! arithmetic step is done in the same order as the Rust reference so the
//! two agree to the last bits.
//!
//! Zig has no WIT binding generator, so this uses the C bindings:
//! `scripts/build-policies` generates `predictor.h`/`predictor.c` from `wit/`
//! (`cargo xtask c-bindings`), `zig translate-c` turns the header into
//! `predictor_h.zig`, and `zig build-exe` compiles this file with the C glue
//! for wasm32-wasi before `cargo xtask componentize` makes the component.
//! Ownership follows wit-bindgen's C rules: an export frees its arguments;
//! what it returns is malloc'ed and freed by the generated post-return.

const std = @import("std");
const c = @import("predictor_h.zig");

const max_points: usize = 1000;
const alloc = std.heap.c_allocator;

/// The configuration, with the Rust reference's defaults.
const Config = struct {
    alpha: f64 = 0.5,
    window: u64 = 8,
    horizonMs: f64 = 0,
    metrics: ?[]const []const u8 = null,
};

fn setErr(err: *c.predictor_string_t, msg: []const u8) bool {
    c.predictor_string_dup_n(err, msg.ptr, msg.len);
    return false;
}

/// A JSON number as f64; strings are not numbers (std.json's typed parsing
/// would accept "0.5", which the reference refuses, so fields are checked by hand).
fn number(v: std.json.Value) ?f64 {
    const x: f64 = switch (v) {
        .integer => |i| @floatFromInt(i),
        .float => |f| f,
        .number_string => |s| std.fmt.parseFloat(f64, s) catch return null,
        else => return null,
    };
    return if (std.math.isFinite(x)) x else null;
}

/// A JSON integer ≥ 0 (no fraction or exponent), as the reference's `usize`.
fn nonNegative(v: std.json.Value) ?u64 {
    return switch (v) {
        .integer => |i| if (i >= 0) @intCast(i) else null,
        .number_string => |s| std.fmt.parseInt(u64, s, 10) catch null,
        else => null,
    };
}

fn metricNames(v: std.json.Value, arena: std.mem.Allocator) error{ Invalid, OutOfMemory }!?[]const []const u8 {
    switch (v) {
        .null => return null,
        .array => |a| {
            const out = try arena.alloc([]const u8, a.items.len);
            for (a.items, out) |item, *o| {
                if (item != .string) return error.Invalid;
                o.* = item.string;
            }
            return out;
        },
        else => return error.Invalid,
    }
}

fn fail(err: *c.predictor_string_t, msg: []const u8) ?Config {
    _ = setErr(err, msg);
    return null;
}

/// Parses and validates the configuration with the reference's rules: empty
/// text is `{}`, unknown and duplicate fields are errors.
fn parse(text: []const u8, arena: std.mem.Allocator, err: *c.predictor_string_t) ?Config {
    const trimmed = std.mem.trim(u8, text, " \t\r\n");
    const src = if (trimmed.len == 0) "{}" else text;
    const root = std.json.parseFromSliceLeaky(std.json.Value, arena, src, .{}) catch |e| {
        var buf: [128]u8 = undefined;
        const msg = std.fmt.bufPrint(&buf, "invalid config: {s}", .{@errorName(e)}) catch "invalid config";
        return fail(err, msg);
    };
    if (root != .object) return fail(err, "invalid config: expected a JSON object");
    var cfg = Config{};
    var it = root.object.iterator();
    while (it.next()) |entry| {
        const key = entry.key_ptr.*;
        const v = entry.value_ptr.*;
        if (std.mem.eql(u8, key, "alpha")) {
            cfg.alpha = number(v) orelse return fail(err, "invalid config: `alpha` must be a number");
        } else if (std.mem.eql(u8, key, "window")) {
            cfg.window = nonNegative(v) orelse return fail(err, "invalid config: `window` must be a non-negative integer");
        } else if (std.mem.eql(u8, key, "horizonMs")) {
            cfg.horizonMs = number(v) orelse return fail(err, "invalid config: `horizonMs` must be a number");
        } else if (std.mem.eql(u8, key, "metrics")) {
            cfg.metrics = metricNames(v, arena) catch return fail(err, "invalid config: `metrics` must be a list of strings");
        } else {
            return fail(err, "invalid config: unknown field, expected one of alpha, window, horizonMs, metrics");
        }
    }
    if (!(cfg.alpha > 0 and cfg.alpha <= 1)) return fail(err, "`alpha` must be in (0, 1]");
    if (cfg.window < 2) return fail(err, "`window` must be at least 2");
    if (!(std.math.isFinite(cfg.horizonMs) and cfg.horizonMs >= 0)) return fail(err, "`horizonMs` must be >= 0");
    return cfg;
}

export fn exports_predictor_validate_config(config: *c.predictor_string_t, err: *c.predictor_string_t) bool {
    defer c.predictor_string_free(config);
    var arena = std.heap.ArenaAllocator.init(alloc);
    defer arena.deinit();
    return parse(config.ptr[0..config.len], arena.allocator(), err) != null;
}

fn slope(tail: []const c.wasm_autoscaler_policy_types_sample_t) f64 {
    if (tail.len < 2) return 0;
    const n: f64 = @floatFromInt(tail.len);
    var sum_x: f64 = 0;
    var sum_y: f64 = 0;
    for (tail) |s| sum_x += s.time_ms;
    for (tail) |s| sum_y += s.value;
    const mean_x = sum_x / n;
    const mean_y = sum_y / n;
    var sxy: f64 = 0;
    var sxx: f64 = 0;
    for (tail) |s| {
        const dx = s.time_ms - mean_x;
        sxy += dx * (s.value - mean_y);
        sxx += dx * dx;
    }
    return if (sxx == 0) 0 else sxy / sxx;
}

fn pointCount(horizon: f64, step: f64) usize {
    if (!(horizon > 0 and step > 0)) return 0;
    const ratio = horizon / step;
    if (ratio >= @as(f64, @floatFromInt(max_points))) return max_points;
    return @max(1, @as(usize, @intFromFloat(@ceil(ratio))));
}

fn wanted(cfg: Config, name: []const u8) bool {
    const names = cfg.metrics orelse return true;
    for (names) |m| if (std.mem.eql(u8, m, name)) return true;
    return false;
}

export fn exports_predictor_forecast(
    req: *c.predictor_forecast_request_t,
    ret: *c.predictor_forecast_response_t,
    err: *c.predictor_string_t,
) bool {
    defer c.predictor_forecast_request_free(req);
    var arena = std.heap.ArenaAllocator.init(alloc);
    defer arena.deinit();
    const cfg = parse(req.config.ptr[0..req.config.len], arena.allocator(), err) orelse return false;
    const horizon = @max(req.horizon_ms, cfg.horizonMs);
    const step = if (req.step_ms > 0) req.step_ms else horizon;
    const n = pointCount(horizon, step);
    const histories = if (req.histories.len == 0) &[_]c.wasm_autoscaler_policy_types_metric_history_t{} else req.histories.ptr[0..req.histories.len];
    const out = alloc.alloc(c.wasm_autoscaler_policy_types_metric_forecast_t, histories.len) catch return setErr(err, "out of memory");
    var count: usize = 0;
    for (histories) |h| {
        const name = h.name.ptr[0..h.name.len];
        if (!wanted(cfg, name)) continue;
        var f = &out[count];
        count += 1;
        c.predictor_string_dup_n(&f.name, h.name.ptr, h.name.len);
        f.points = .{ .ptr = null, .len = 0 };
        if (h.samples.len == 0 or n == 0) continue;
        const samples = h.samples.ptr[0..h.samples.len];
        var level = samples[0].value;
        for (samples[1..]) |s| level = cfg.alpha * s.value + (1 - cfg.alpha) * level;
        const tail_len: usize = @intCast(@min(cfg.window, samples.len));
        const tail = samples[samples.len - tail_len ..];
        const trend = slope(tail);
        const last = samples[samples.len - 1].time_ms;
        const spacing = if (tail.len > 1) (last - tail[0].time_ms) / @as(f64, @floatFromInt(tail.len - 1)) else 0;
        const lag = spacing * (1 - cfg.alpha) / cfg.alpha;
        const points = alloc.alloc(c.wasm_autoscaler_policy_types_forecast_point_t, n) catch return setErr(err, "out of memory");
        for (points, 1..) |*p, k| {
            const t = req.now_ms + @as(f64, @floatFromInt(k)) * step;
            const value = level + trend * (t - last + lag);
            p.* = .{ .time_ms = t, .value = if (value > 0) value else 0 };
        }
        f.points = .{ .ptr = points.ptr, .len = n };
    }
    if (count == 0) alloc.free(out);
    ret.forecasts = .{ .ptr = if (count == 0) null else out.ptr, .len = count };
    ret.state = .{ .is_some = false, .val = .{ .ptr = null, .len = 0 } };
    return true;
}
