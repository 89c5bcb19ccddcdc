/*
** yaml_scalar.h: private to modules/yaml.c (decoding) and
** modules/yaml_encode.c (encoding), not part of the host API.  It holds the
** one definition of how a plain scalar is typed, so the decoder reads and the
** encoder quotes by the same rules: the YAML 1.2 core schema, plus the 0777
** octals that the Go readers of Kubernetes and Talos still take.
**
** Everything here is static inline: the natives export one symbol each.
*/
#ifndef TLR_YAML_SCALAR_H
#define TLR_YAML_SCALAR_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tlr.h"

/* The array metatable, shared with tlr.json: whoever loads first creates it. */
#define YAML_ARRAY_MT "tlr.json.array"
/* The deepest nesting either direction accepts (C recursion). */
#define YAML_MAX_DEPTH 1000

enum { R_STR, R_NULL, R_BOOL, R_INT, R_FLOAT };

typedef struct scalar_value {
  int kind;
  int b;
  lua_Integer i;
  lua_Number n;
} scalar_value;

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* True when s[0..len) is one of the three spellings (lower, Title, UPPER). */
static inline int one_of(const char *s, size_t len, const char *a, const char *b, const char *c) {
  size_t n = strlen(a);
  return len == n && (!memcmp(s, a, n) || !memcmp(s, b, n) || !memcmp(s, c, n));
}

static inline int digit_value(char c, int base) {
  int v = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
        : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : 99;
  return v < base ? v : -1;
}

/* Reads the digits [p, end) in base; an integer, or a float when too large. */
static inline int scalar_uint(const char *p, const char *end, int base, int neg,
                              scalar_value *out) {
  uint64_t mag = 0;
  double approx = 0;
  int overflow = 0;
  if (p == end) return 0;
  for (; p < end; p++) {
    int v = digit_value(*p, base);
    if (v < 0) return 0;
    approx = approx * base + v;
    if (mag > (UINT64_MAX - (uint64_t)v) / (uint64_t)base) overflow = 1;
    else mag = mag * (uint64_t)base + (uint64_t)v;
  }
  if (!overflow && !neg && mag <= (uint64_t)LUA_MAXINTEGER) {
    out->kind = R_INT;
    out->i = (lua_Integer)mag;
  } else if (!overflow && neg && mag <= (uint64_t)LUA_MAXINTEGER + 1) {
    out->kind = R_INT;
    out->i = mag == (uint64_t)LUA_MAXINTEGER + 1 ? LUA_MININTEGER : -(lua_Integer)mag;
  } else {
    out->kind = R_FLOAT;
    out->n = neg ? -approx : approx;
  }
  return 1;
}

/*
** Numbers of the core schema: [-+]? then 0x.. / 0o.. / digits (0[0-7]+ is
** an old-style octal, as go-yaml reads it) / floats with optional exponent /
** .inf; and .nan.  s must be NUL-terminated (strtod reads up to the end).
*/
static inline int scalar_number(const char *s, size_t len, scalar_value *out) {
  const char *p = s, *end = s + len, *q;
  int neg = 0;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  if (p == end) return 0;
  if (*p == '.' && end - p == 4) {
    if (one_of(p + 1, 3, "inf", "Inf", "INF")) {
      out->kind = R_FLOAT;
      out->n = neg ? -HUGE_VAL : HUGE_VAL;
      return 1;
    }
    if (p == s && one_of(p + 1, 3, "nan", "NaN", "NAN")) {
      out->kind = R_FLOAT;
      out->n = NAN;
      return 1;
    }
  }
  if (*p == '0' && end - p > 2 && (p[1] == 'x' || p[1] == 'o'))
    return scalar_uint(p + 2, end, p[1] == 'x' ? 16 : 8, neg, out);
  for (q = p; q < end && is_digit(*q);) q++;
  if (q == end) {
    int octal = *p == '0' && end - p > 1;
    for (const char *r = p; r < end && octal; r++) octal = *r <= '7';
    scalar_uint(p, end, octal ? 8 : 10, neg, out);
    if (out->kind == R_FLOAT && !octal) out->n = strtod(s, NULL); /* exact rounding */
    return 1;
  }
  if (q == p && !(*q == '.' && q + 1 < end && is_digit(q[1]))) return 0;
  if (*q == '.')
    for (q++; q < end && is_digit(*q);) q++;
  if (q < end && (*q == 'e' || *q == 'E')) {
    if (++q < end && (*q == '+' || *q == '-')) q++;
    const char *digits = q;
    while (q < end && is_digit(*q)) q++;
    if (q == digits) return 0;
  }
  if (q != end) return 0;
  out->kind = R_FLOAT;
  out->n = strtod(s, NULL);
  return 1;
}

/* Types a plain scalar by the core schema; out->kind is R_STR when it is text. */
static inline void scalar_resolve(const char *s, size_t len, scalar_value *out) {
  out->kind = R_STR;
  if (len == 0) {
    out->kind = R_NULL;
    return;
  }
  switch (s[0]) {
    case '~': if (len == 1) out->kind = R_NULL; return;
    case 'n': case 'N':
      if (one_of(s, len, "null", "Null", "NULL")) out->kind = R_NULL;
      return;
    case 't': case 'T': case 'f': case 'F':
      if (one_of(s, len, "true", "True", "TRUE") || one_of(s, len, "false", "False", "FALSE")) {
        out->kind = R_BOOL;
        out->b = s[0] == 't' || s[0] == 'T';
      }
      return;
    case '-': case '+': case '.':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      scalar_number(s, len, out);
      return;
    default: return;
  }
}

#endif
