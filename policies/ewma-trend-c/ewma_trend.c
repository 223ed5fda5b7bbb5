// `ewma-trend` in C: the same predictor as `policies/ewma-trend`.
//
// The EWMA of each metric plus the least-squares trend of its last `window`
// samples, projected ahead, with the EWMA's lag on a ramp added back. Every
// arithmetic step is done in the same order as the Rust reference so the
// two agree to the last bits.
//
// Built by `scripts/build-policies`: `cargo xtask c-bindings` generates
// `predictor.h`/`predictor.c` from `wit/`, clang compiles them with this file
// for wasm32-wasi, and `cargo xtask componentize` makes the component.
//
// Ownership follows wit-bindgen's C rules: an export owns its arguments and
// frees them; what it returns is freed by the generated post-return.

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "predictor.h"

typedef wasm_autoscaler_policy_types_sample_t sample_t;
typedef wasm_autoscaler_policy_types_metric_history_t history_t;
typedef wasm_autoscaler_policy_types_forecast_point_t point_t;
typedef wasm_autoscaler_policy_types_metric_forecast_t forecast_t;

// Most points one forecast may hold, whatever horizon and step are asked.
#define MAX_POINTS 1000

typedef struct {
  double alpha;
  double window;  // a non-negative integer, kept as a double to bound it
  double horizon_ms;
  bool has_metrics;
  size_t metric_count;
  predictor_string_t *metrics;
} config_t;

static void config_free(config_t *c) {
  for (size_t i = 0; i < c->metric_count; i++) free(c->metrics[i].ptr);
  free(c->metrics);
  c->metrics = NULL;
  c->metric_count = 0;
}

// Sets `err` to a formatted message; always returns false so callers can
// `return fail(err, ...)`.
static bool fail(predictor_string_t *err, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  predictor_string_dup(err, buf);
  return false;
}

// ---- a JSON reader just large enough for the configuration object ----

typedef struct {
  const char *p;
  const char *end;
  predictor_string_t *err;
} reader_t;

static void skip_ws(reader_t *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static bool expect(reader_t *r, char c) {
  skip_ws(r);
  if (r->p < r->end && *r->p == c) {
    r->p++;
    return true;
  }
  return fail(r->err, "invalid config: expected `%c`", c);
}

static bool literal(reader_t *r, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(r->end - r->p) >= n && memcmp(r->p, word, n) == 0) {
    r->p += n;
    return true;
  }
  return false;
}

static void put_utf8(char *out, size_t *len, unsigned cp) {
  if (cp < 0x80) {
    out[(*len)++] = (char)cp;
  } else if (cp < 0x800) {
    out[(*len)++] = (char)(0xC0 | (cp >> 6));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out[(*len)++] = (char)(0xE0 | (cp >> 12));
    out[(*len)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    out[(*len)++] = (char)(0xF0 | (cp >> 18));
    out[(*len)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[(*len)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  }
}

static bool hex4(reader_t *r, unsigned *out) {
  if (r->end - r->p < 4) return fail(r->err, "invalid config: truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = *r->p++;
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return fail(r->err, "invalid config: invalid \\u escape");
  }
  *out = v;
  return true;
}

// Reads a JSON string into a fresh, owned UTF-8 string.
static bool read_string(reader_t *r, predictor_string_t *out) {
  skip_ws(r);
  if (r->p >= r->end || *r->p != '"') return fail(r->err, "invalid config: expected a string");
  r->p++;
  // Escapes never make the text longer, so the input length bounds the output.
  char *buf = malloc((size_t)(r->end - r->p) + 1);
  size_t len = 0;
  while (r->p < r->end && *r->p != '"') {
    unsigned char c = (unsigned char)*r->p++;
    if (c < 0x20) {
      free(buf);
      return fail(r->err, "invalid config: control character in a string");
    }
    if (c != '\\') {
      buf[len++] = (char)c;
      continue;
    }
    if (r->p >= r->end) break;
    char e = *r->p++;
    unsigned cp;
    switch (e) {
      case '"': buf[len++] = '"'; break;
      case '\\': buf[len++] = '\\'; break;
      case '/': buf[len++] = '/'; break;
      case 'b': buf[len++] = '\b'; break;
      case 'f': buf[len++] = '\f'; break;
      case 'n': buf[len++] = '\n'; break;
      case 'r': buf[len++] = '\r'; break;
      case 't': buf[len++] = '\t'; break;
      case 'u':
        if (!hex4(r, &cp)) {
          free(buf);
          return false;
        }
        if (cp >= 0xD800 && cp < 0xDC00) {
          unsigned lo;
          if (!literal(r, "\\u") || !hex4(r, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
            free(buf);
            return fail(r->err, "invalid config: lone surrogate in a string");
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp < 0xE000) {
          free(buf);
          return fail(r->err, "invalid config: lone surrogate in a string");
        }
        put_utf8(buf, &len, cp);
        break;
      default:
        free(buf);
        return fail(r->err, "invalid config: invalid escape in a string");
    }
  }
  if (r->p >= r->end) {
    free(buf);
    return fail(r->err, "invalid config: unterminated string");
  }
  r->p++;
  out->ptr = (uint8_t *)buf;
  out->len = len;
  return true;
}

// Reads a JSON number; `integral` tells whether it had no fraction or exponent.
static bool read_number(reader_t *r, const char *key, double *out, bool *integral, bool *negative) {
  skip_ws(r);
  const char *start = r->p;
  *negative = r->p < r->end && *r->p == '-';
  if (*negative) r->p++;
  const char *digits = r->p;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
  if (r->p == digits || (*digits == '0' && r->p - digits > 1)) {
    return fail(r->err, "invalid config: invalid type for `%s`, expected a number", key);
  }
  *integral = true;
  if (r->p < r->end && *r->p == '.') {
    *integral = false;
    const char *frac = ++r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
    if (r->p == frac) return fail(r->err, "invalid config: invalid number for `%s`", key);
  }
  if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    *integral = false;
    r->p++;
    if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
    const char *exp = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
    if (r->p == exp) return fail(r->err, "invalid config: invalid number for `%s`", key);
  }
  char text[400];
  size_t n = (size_t)(r->p - start);
  if (n >= sizeof text) return fail(r->err, "invalid config: number for `%s` is too long", key);
  memcpy(text, start, n);
  text[n] = 0;
  *out = strtod(text, NULL);
  if (!isfinite(*out)) return fail(r->err, "invalid config: `%s` is out of range", key);
  return true;
}

static bool read_metrics(reader_t *r, config_t *c) {
  skip_ws(r);
  if (literal(r, "null")) return true;
  if (r->p >= r->end || *r->p != '[') {
    return fail(r->err, "invalid config: invalid type for `metrics`, expected a list of strings");
  }
  r->p++;
  c->has_metrics = true;
  skip_ws(r);
  if (r->p < r->end && *r->p == ']') {
    r->p++;
    return true;
  }
  for (;;) {
    predictor_string_t name;
    if (!read_string(r, &name)) return false;
    c->metrics = realloc(c->metrics, (c->metric_count + 1) * sizeof *c->metrics);
    c->metrics[c->metric_count++] = name;
    skip_ws(r);
    if (r->p < r->end && *r->p == ',') {
      r->p++;
      continue;
    }
    return expect(r, ']');
  }
}

static bool key_is(const predictor_string_t *key, const char *name) {
  return key->len == strlen(name) && memcmp(key->ptr, name, key->len) == 0;
}

// Parses the configuration text with the Rust reference's rules: empty text
// is `{}`, unknown and duplicate fields are errors, `window` is a
// non-negative integer.
static bool parse_config(const predictor_string_t *text, config_t *c, predictor_string_t *err) {
  *c = (config_t){.alpha = 0.5, .window = 8, .horizon_ms = 0};
  reader_t r = {(const char *)text->ptr, (const char *)text->ptr + text->len, err};
  skip_ws(&r);
  if (r.p == r.end) return true;
  if (!expect(&r, '{')) return false;
  bool seen[4] = {false, false, false, false};
  skip_ws(&r);
  bool empty = r.p < r.end && *r.p == '}';
  if (empty) r.p++;
  while (!empty) {
    predictor_string_t key;
    if (!read_string(&r, &key)) return false;
    int field = key_is(&key, "alpha") ? 0 : key_is(&key, "window") ? 1 : key_is(&key, "horizonMs") ? 2 : key_is(&key, "metrics") ? 3 : -1;
    if (field < 0) {
      bool ok = fail(err, "invalid config: unknown field `%.*s`, expected one of alpha, window, horizonMs, metrics", (int)key.len, (const char *)key.ptr);
      free(key.ptr);
      return ok;
    }
    free(key.ptr);
    if (seen[field]) return fail(err, "invalid config: duplicate field");
    seen[field] = true;
    if (!expect(&r, ':')) return false;
    bool integral, negative;
    double value;
    switch (field) {
      case 0:
        if (!read_number(&r, "alpha", &c->alpha, &integral, &negative)) return false;
        break;
      case 1:
        if (!read_number(&r, "window", &value, &integral, &negative)) return false;
        if (!integral || (negative && value != 0) || value > 18446744073709551615.0) {
          return fail(err, "invalid config: invalid value for `window`, expected a non-negative integer");
        }
        c->window = value;
        break;
      case 2:
        if (!read_number(&r, "horizonMs", &c->horizon_ms, &integral, &negative)) return false;
        break;
      default:
        if (!read_metrics(&r, c)) return false;
    }
    skip_ws(&r);
    if (r.p < r.end && *r.p == ',') {
      r.p++;
      continue;
    }
    if (!expect(&r, '}')) return false;
    break;
  }
  skip_ws(&r);
  if (r.p != r.end) return fail(err, "invalid config: trailing characters after the object");
  return true;
}

static bool validate(const config_t *c, predictor_string_t *err) {
  if (!(c->alpha > 0.0 && c->alpha <= 1.0)) return fail(err, "`alpha` must be in (0, 1], got %g", c->alpha);
  if (c->window < 2) return fail(err, "`window` must be at least 2, got %.0f", c->window);
  if (!(isfinite(c->horizon_ms) && c->horizon_ms >= 0.0)) {
    return fail(err, "`horizonMs` must be ≥ 0, got %g", c->horizon_ms);
  }
  return true;
}

// ---- the forecast ----

// Least-squares slope of the samples, centred first; 0 when it is undefined.
static double slope(const sample_t *s, size_t n) {
  if (n < 2) return 0.0;
  double sum_x = 0.0, sum_y = 0.0;
  for (size_t i = 0; i < n; i++) sum_x += s[i].time_ms;
  for (size_t i = 0; i < n; i++) sum_y += s[i].value;
  double mean_x = sum_x / (double)n, mean_y = sum_y / (double)n;
  double sxy = 0.0, sxx = 0.0;
  for (size_t i = 0; i < n; i++) {
    double dx = s[i].time_ms - mean_x;
    sxy += dx * (s[i].value - mean_y);
    sxx += dx * dx;
  }
  return sxx == 0.0 ? 0.0 : sxy / sxx;
}

static void project(const config_t *c, const history_t *h, double now, double step, size_t n,
                    wasm_autoscaler_policy_types_list_forecast_point_t *out) {
  out->ptr = NULL;
  out->len = 0;
  const sample_t *s = h->samples.ptr;
  size_t len = h->samples.len;
  if (len == 0) return;
  double level = s[0].value;
  for (size_t i = 1; i < len; i++) level = c->alpha * s[i].value + (1.0 - c->alpha) * level;
  size_t tail_len = c->window < (double)len ? (size_t)c->window : len;
  const sample_t *tail = s + (len - tail_len);
  double trend = slope(tail, tail_len);
  double last = s[len - 1].time_ms;
  double spacing = tail_len > 1 ? (last - tail[0].time_ms) / (double)(tail_len - 1) : 0.0;
  double lag = spacing * (1.0 - c->alpha) / c->alpha;
  if (n == 0) return;
  out->ptr = malloc(n * sizeof(point_t));
  out->len = n;
  for (size_t k = 1; k <= n; k++) {
    double t = now + (double)k * step;
    double value = level + trend * (t - last + lag);
    // Like Rust's f64::max(0.0): a NaN becomes 0 too.
    out->ptr[k - 1] = (point_t){.time_ms = t, .value = value > 0.0 ? value : 0.0};
  }
}

static size_t point_count(double horizon, double step) {
  if (!(horizon > 0.0 && step > 0.0)) return 0;
  double ratio = horizon / step;
  if (ratio >= MAX_POINTS) return MAX_POINTS;
  double n = ceil(ratio);
  return n < 1 ? 1 : (size_t)n;
}

static bool wanted(const config_t *c, const predictor_string_t *name) {
  if (!c->has_metrics) return true;
  for (size_t i = 0; i < c->metric_count; i++) {
    if (c->metrics[i].len == name->len && memcmp(c->metrics[i].ptr, name->ptr, name->len) == 0) return true;
  }
  return false;
}

bool exports_predictor_validate_config(predictor_string_t *text, predictor_string_t *err) {
  config_t c;
  bool ok = parse_config(text, &c, err) && validate(&c, err);
  config_free(&c);
  predictor_string_free(text);
  return ok;
}

bool exports_predictor_forecast(predictor_forecast_request_t *req, predictor_forecast_response_t *ret,
                                predictor_string_t *err) {
  config_t c;
  bool ok = parse_config(&req->config, &c, err) && validate(&c, err);
  if (ok) {
    double horizon = fmax(req->horizon_ms, c.horizon_ms);
    double step = req->step_ms > 0.0 ? req->step_ms : horizon;
    size_t n = point_count(horizon, step);
    size_t count = req->histories.len;
    ret->forecasts.ptr = count ? malloc(count * sizeof(forecast_t)) : NULL;
    ret->forecasts.len = 0;
    ret->state.is_some = false;
    for (size_t i = 0; i < count; i++) {
      const history_t *h = &req->histories.ptr[i];
      if (!wanted(&c, &h->name)) continue;
      forecast_t *f = &ret->forecasts.ptr[ret->forecasts.len++];
      predictor_string_dup_n(&f->name, (const char *)h->name.ptr, h->name.len);
      project(&c, h, req->now_ms, step, n, &f->points);
    }
  }
  config_free(&c);
  predictor_forecast_request_free(req);
  return ok;
}
