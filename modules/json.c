/*
** json.c: the native half of tlr.json (tlr.json.core).
**
** Decoding is cjson's (lua/tlr/json.lua calls cjson.safe); this file adds
** the pass over cjson's result that turns integral floats into integers and
** marks every decoded array with the "tlr.json.array" metatable.  Encoding
** is our own: exact integers, shortest round-trip floats, strict UTF-8,
** sorted keys by default, and the path of the offending value in errors.
**
** The encoder keeps its output buffer and scratch arrays in malloc'd memory
** owned by a private userdata (tlr.json.Encoder) on the Lua stack, so a
** memory error raised halfway leaks nothing: __gc frees it.
*/
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tlr.h"

#define ARRAY_MT "tlr.json.array"
#define ENCODER_MT "tlr.json.Encoder"
#define MAX_DEPTH 1000
#define SAFE_INT 9007199254740992.0 /* 2^53: larger floats are not exact integers */

/* ========== decode: the pass over cjson's result ========== */

/*
** True (and *out set) when the number at idx is integral and within +-2^53.
** cjson only makes floats; an integer passed in is simply rewritten.
*/
static int json_intvalue(lua_State *L, int idx, lua_Integer *out) {
  lua_Number d = lua_tonumber(L, idx);
  if (d < -SAFE_INT || d > SAFE_INT || d != floor(d)) return 0;
  *out = (lua_Integer)d;
  return 1;
}

/*
** Fixes the table on top of the stack in place; the array metatable is at
** stack index mt.  cjson builds arrays with keys 1..n and objects with
** string keys only, so a table with a non-zero length is an array.
** Returns -1 when the stack cannot grow (nesting beyond cjson's own limit).
*/
static int json_fix_table(lua_State *L, int mt, int depth) {
  int t = lua_gettop(L);
  lua_Integer iv;
  if (depth > MAX_DEPTH || !lua_checkstack(L, 4)) return -1;
  lua_Unsigned n = lua_rawlen(L, t);
  if (n > 0) {
    lua_pushvalue(L, mt);
    lua_setmetatable(L, t);
    for (lua_Unsigned i = 1; i <= n; i++) {
      int type = lua_rawgeti(L, t, (lua_Integer)i);
      if (type == LUA_TNUMBER) {
        if (json_intvalue(L, -1, &iv)) {
          lua_pushinteger(L, iv);
          lua_rawseti(L, t, (lua_Integer)i);
        }
      } else if (type == LUA_TTABLE) {
        if (json_fix_table(L, mt, depth + 1) != 0) return -1;
      }
      lua_pop(L, 1);
    }
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, t)) { /* [.. t key value] */
    int type = lua_type(L, -1);
    if (type == LUA_TNUMBER) {
      if (json_intvalue(L, -1, &iv)) { /* assigning an existing field keeps next() valid */
        lua_pushvalue(L, -2);
        lua_pushinteger(L, iv);
        lua_rawset(L, t);
      }
    } else if (type == LUA_TTABLE) {
      if (json_fix_table(L, mt, depth + 1) != 0) return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/*
** fix(value) -> value
** Takes what cjson.decode returned: integral floats within +-2^53 become
** integers and arrays get the array metatable, in place.  Raises only when
** the nesting is too deep for the Lua stack (cjson stops at 1000 levels).
*/
static int json_fix(lua_State *L) {
  lua_Integer iv;
  lua_settop(L, 1);
  if (lua_type(L, 1) == LUA_TNUMBER) {
    if (json_intvalue(L, 1, &iv)) lua_pushinteger(L, iv);
    return 1;
  }
  if (lua_type(L, 1) != LUA_TTABLE) return 1;
  lua_pushvalue(L, lua_upvalueindex(1)); /* [t, mt] */
  lua_pushvalue(L, 1);
  if (json_fix_table(L, 2, 1) != 0) return luaL_error(L, "json: document nested too deeply");
  lua_settop(L, 1);
  return 1;
}

/* ========== encode: state ========== */

typedef struct enc_key {
  const char *s; /* owned by the table being encoded, which is on the stack */
  size_t len;
} enc_key;

typedef struct enc_level {
  const void *table;
  const char *key; /* member being written: key (objects) or index (arrays) */
  size_t klen;
  lua_Integer index;
} enc_level;

typedef struct json_enc {
  char *buf;
  size_t len, cap;
  enc_key *keys; /* a stack of the keys of the objects being written */
  size_t nkeys, capkeys;
  enc_level *levels;
  int depth, caplevels;
  int indent, sort, oom;
  char decpoint; /* the locale's decimal point, replaced by '.' */
  char err[160];
} json_enc;

static int json_enc_gc(lua_State *L) {
  json_enc *e = luaL_checkudata(L, 1, ENCODER_MT);
  free(e->buf);
  free(e->keys);
  free(e->levels);
  e->buf = NULL;
  e->keys = NULL;
  e->levels = NULL;
  e->cap = e->capkeys = 0;
  e->caplevels = 0;
  return 0;
}

static int enc_reserve(json_enc *e, size_t n) {
  if (e->cap - e->len >= n) return 0;
  size_t cap = e->cap ? e->cap : 256;
  while (cap - e->len < n) cap *= 2;
  char *p = realloc(e->buf, cap);
  if (!p) {
    e->oom = 1;
    return -1;
  }
  e->buf = p;
  e->cap = cap;
  return 0;
}

static int enc_put(json_enc *e, const char *s, size_t n) {
  if (enc_reserve(e, n) != 0) return -1;
  memcpy(e->buf + e->len, s, n);
  e->len += n;
  return 0;
}

#define enc_lit(e, s) enc_put((e), "" s, sizeof(s) - 1)

static int enc_newline(json_enc *e, int depth) {
  size_t n = 1 + (size_t)e->indent * (size_t)depth;
  if (enc_reserve(e, n) != 0) return -1;
  e->buf[e->len] = '\n';
  memset(e->buf + e->len + 1, ' ', n - 1);
  e->len += n;
  return 0;
}

/* Writes "$.a.b[3]" for the current path into dst (truncated to size). */
static void enc_path(json_enc *e, char *dst, size_t size) {
  size_t n = (size_t)snprintf(dst, size, "$");
  for (int d = 0; d < e->depth && n < size; d++) {
    const enc_level *lv = &e->levels[d];
    if (!lv->key) {
      n += (size_t)snprintf(dst + n, size - n, "[%lld]", (long long)lv->index);
      continue;
    }
    int ident = lv->klen > 0 && lv->klen < 64;
    for (size_t i = 0; i < lv->klen && ident; i++) {
      unsigned char c = (unsigned char)lv->key[i];
      ident = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (i > 0 && c >= '0' && c <= '9') || c == '-';
    }
    if (ident)
      n += (size_t)snprintf(dst + n, size - n, ".%.*s", (int)lv->klen, lv->key);
    else
      n += (size_t)snprintf(dst + n, size - n, "[\"%.*s\"]", (int)(lv->klen > 40 ? 40 : lv->klen),
                            lv->key);
  }
}

/* Records "<what> at <path>" as the failure; returns -1. */
static int enc_fail(json_enc *e, const char *what) {
  char path[112];
  enc_path(e, path, sizeof path);
  if (snprintf(e->err, sizeof e->err, "%s at %s", what, path) >= (int)sizeof e->err)
    memcpy(e->err + sizeof e->err - 4, "...", 4);
  return -1;
}

/* ========== encode: scalars ========== */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_seqlen(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;      /* no overlong forms */
    else if (c == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return len;
}

/* Writes s as a JSON string; fails on invalid UTF-8 (what names key or value). */
static int enc_string(json_enc *e, const char *s, size_t len, const char *what) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, start = 0;
  if (enc_reserve(e, len + 2) != 0) return -1;
  e->buf[e->len++] = '"';
  while (i < len) {
    unsigned char c = u[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0x80) {
      size_t n = utf8_seqlen(u + i, len - i);
      if (n == 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "invalid UTF-8 in %s (byte %zu)", what, i + 1);
        return enc_fail(e, msg);
      }
      i += n;
      continue;
    }
    if (enc_put(e, s + start, i - start) != 0) return -1;
    char esc[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      default:
        memcpy(esc + 1, "u00", 3);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        n = 6;
    }
    if (enc_put(e, esc, n) != 0) return -1;
    start = ++i;
  }
  if (enc_put(e, s + start, i - start) != 0) return -1;
  return enc_lit(e, "\"");
}

/*
** Integers exactly; floats with the fewest digits that read back equal.
** For normal doubles that is 15, 16 or 17 (any decimal of up to DBL_DIG =
** 15 digits survives the round trip, so %.15g is already shortest when it
** reads back); subnormals have less precision and search from 1 digit.
*/
static int enc_number(lua_State *L, json_enc *e, int idx) {
  char tmp[40];
  int n;
  if (lua_isinteger(L, idx)) {
    n = snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, idx));
    return enc_put(e, tmp, (size_t)n);
  }
  double d = (double)lua_tonumber(L, idx);
  if (!isfinite(d)) return enc_fail(e, isnan(d) ? "cannot encode NaN" : "cannot encode infinity");
  for (int prec = (d != 0 && fabs(d) < DBL_MIN) ? 1 : 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (prec == 17 || strtod(tmp, NULL) == d) break;
  }
  if (e->decpoint != '.') {
    char *p = strchr(tmp, e->decpoint);
    if (p) *p = '.';
  }
  return enc_put(e, tmp, (size_t)n);
}

/* ========== encode: tables ========== */

static int enc_value(lua_State *L, json_enc *e);

static int enc_pushlevel(json_enc *e, const void *table) {
  if (e->depth == e->caplevels) {
    int cap = e->caplevels ? e->caplevels * 2 : 16;
    enc_level *p = realloc(e->levels, (size_t)cap * sizeof *p);
    if (!p) {
      e->oom = 1;
      return -1;
    }
    e->levels = p;
    e->caplevels = cap;
  }
  enc_level *lv = &e->levels[e->depth++];
  lv->table = table;
  lv->key = NULL;
  lv->klen = 0;
  lv->index = 0;
  return 0;
}

static int enc_pushkey(json_enc *e, const char *s, size_t len) {
  if (e->nkeys == e->capkeys) {
    size_t cap = e->capkeys ? e->capkeys * 2 : 64;
    enc_key *p = realloc(e->keys, cap * sizeof *p);
    if (!p) {
      e->oom = 1;
      return -1;
    }
    e->keys = p;
    e->capkeys = cap;
  }
  e->keys[e->nkeys].s = s;
  e->keys[e->nkeys].len = len;
  e->nkeys++;
  return 0;
}

static int enc_keycmp(const void *a, const void *b) {
  const enc_key *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
  if (c != 0) return c;
  return (x->len > y->len) - (x->len < y->len);
}

/* Writes the array t[1..n] (t at stack index t). */
static int enc_array(lua_State *L, json_enc *e, int t, lua_Integer n) {
  int depth = e->depth;
  if (n == 0) return enc_lit(e, "[]");
  if (enc_lit(e, "[") != 0) return -1;
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1 && enc_lit(e, ",") != 0) return -1;
    if (e->indent && enc_newline(e, depth) != 0) return -1;
    e->levels[depth - 1].index = i; /* re-read: children may move the array */
    lua_rawgeti(L, t, i);
    if (enc_value(L, e) != 0) return -1;
    lua_pop(L, 1);
  }
  if (e->indent && enc_newline(e, depth - 1) != 0) return -1;
  return enc_lit(e, "]");
}

/* Writes the object whose keys are e->keys[first..e->nkeys) (t at stack index t). */
static int enc_object(lua_State *L, json_enc *e, int t, size_t first) {
  int depth = e->depth;
  size_t count = e->nkeys - first;
  if (count == 0) return enc_lit(e, "{}");
  if (e->sort) qsort(e->keys + first, count, sizeof *e->keys, enc_keycmp);
  if (enc_lit(e, "{") != 0) return -1;
  for (size_t i = 0; i < count; i++) {
    enc_key k = e->keys[first + i]; /* by value: children may move the array */
    enc_level *lv = &e->levels[depth - 1];
    lv->key = k.s;
    lv->klen = k.len;
    if (i > 0 && enc_lit(e, ",") != 0) return -1;
    if (e->indent && enc_newline(e, depth) != 0) return -1;
    if (enc_string(e, k.s, k.len, "key") != 0) return -1;
    if ((e->indent ? enc_lit(e, ": ") : enc_lit(e, ":")) != 0) return -1;
    lua_pushlstring(L, k.s, k.len);
    lua_rawget(L, t);
    if (enc_value(L, e) != 0) return -1;
    lua_pop(L, 1);
  }
  if (e->indent && enc_newline(e, depth - 1) != 0) return -1;
  return enc_lit(e, "}");
}

/*
** Writes the table on top of the stack.  Stack index 2 holds the array
** metatable.  Arrays: marked with it, or keys exactly 1..n.  Objects:
** string keys only (an empty plain table is {}).  Anything else fails.
*/
static int enc_table(lua_State *L, json_enc *e) {
  int t = lua_gettop(L);
  const void *p = lua_topointer(L, t);
  for (int d = 0; d < e->depth; d++)
    if (e->levels[d].table == p) return enc_fail(e, "cycle: a table contains itself");
  if (e->depth >= MAX_DEPTH) return enc_fail(e, "nesting deeper than 1000 levels");
  if (!lua_checkstack(L, 4)) return enc_fail(e, "nesting too deep for the Lua stack");
  int marked = 0;
  if (lua_getmetatable(L, t)) {
    marked = lua_rawequal(L, -1, 2);
    lua_pop(L, 1);
  }
  size_t first = e->nkeys;
  lua_Integer nint = 0, maxint = 0;
  const char *bad = NULL;
  lua_pushnil(L);
  while (lua_next(L, t)) { /* [.. t key value] */
    lua_pop(L, 1);
    int kt = lua_type(L, -1);
    if (kt == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (enc_pushkey(e, s, len) != 0) return -1;
    } else if (kt == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      lua_Integer k = lua_tointeger(L, -1);
      nint++;
      if (k > maxint) maxint = k;
    } else if (!bad) {
      bad = kt == LUA_TNUMBER ? "non-index number" : luaL_typename(L, -1);
    }
  }
  size_t nstr = e->nkeys - first;
  char msg[96];
  if (bad) {
    snprintf(msg, sizeof msg, "table has a key of type %s (want strings or 1..n)", bad);
    return enc_fail(e, msg);
  }
  if (nstr > 0 && (nint > 0 || marked))
    return enc_fail(e, marked ? "array has string keys" : "table mixes string keys and indices");
  if (nint != maxint) {
    snprintf(msg, sizeof msg, "sparse array (%lld values, largest index %lld)", (long long)nint,
             (long long)maxint);
    return enc_fail(e, msg);
  }
  if (enc_pushlevel(e, p) != 0) return -1;
  int rc = (nint > 0 || marked) ? enc_array(L, e, t, nint) : enc_object(L, e, t, first);
  if (rc != 0) return -1;
  e->nkeys = first;
  e->depth--;
  return 0;
}

/* Writes the value on top of the stack (and leaves it there). */
static int enc_value(lua_State *L, json_enc *e) {
  switch (lua_type(L, -1)) {
    case LUA_TNIL: return enc_lit(e, "null");
    case LUA_TBOOLEAN: return lua_toboolean(L, -1) ? enc_lit(e, "true") : enc_lit(e, "false");
    case LUA_TNUMBER: return enc_number(L, e, -1);
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      return enc_string(e, s, len, "string");
    }
    case LUA_TTABLE: return enc_table(L, e);
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, -1) == NULL) return enc_lit(e, "null"); /* json.null */
      return enc_fail(e, "cannot encode a light userdata");
    default: {
      char msg[48];
      snprintf(msg, sizeof msg, "cannot encode a %s", luaL_typename(L, -1));
      return enc_fail(e, msg);
    }
  }
}

/*
** encode(value, indent, sort) -> string | nil, msg, "EINVAL"
** indent: spaces per level (0 = compact); sort: write object keys in byte
** order.  Fails on functions, userdata, threads, NaN/inf, invalid UTF-8,
** cycles and tables that are neither arrays nor objects, naming the path.
*/
static int json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_Integer indent = luaL_checkinteger(L, 2);
  luaL_argcheck(L, indent >= 0 && indent <= 16, 2, "indent must be 0..16");
  int sort = lua_toboolean(L, 3);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1)); /* [v, array_mt] */
  json_enc *e = lua_newuserdatauv(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, ENCODER_MT); /* [v, array_mt, enc] */
  e->indent = (int)indent;
  e->sort = sort;
  e->decpoint = localeconv()->decimal_point[0];
  lua_pushvalue(L, 1); /* [v, array_mt, enc, v] */
  int rc = enc_value(L, e);
  if (e->oom) return luaL_error(L, "not enough memory"); /* __gc frees the buffers */
  if (rc != 0) return tlr_fail(L, "EINVAL", "json: %s", e->err);
  lua_pushlstring(L, e->buf, e->len);
  lua_pushcfunction(L, json_enc_gc); /* free the buffer now, not at the next GC */
  lua_pushvalue(L, 3);
  lua_call(L, 1, 0);
  return 1;
}

static const luaL_Reg json_funcs[] = {
  {"fix", json_fix},
  {"encode", json_encode},
  {NULL, NULL},
};

static const luaL_Reg encoder_meta[] = {
  {"__gc", json_enc_gc},
  {NULL, NULL},
};

int luaopen_tlr_json_core(lua_State *L) {
  tlr_newclass(L, ENCODER_MT, NULL, encoder_meta);
  lua_newtable(L);
  luaL_newmetatable(L, ARRAY_MT); /* shared with tlr.yaml: whoever loads first creates it */
  luaL_setfuncs(L, json_funcs, 1);
  luaL_getmetatable(L, ARRAY_MT);
  lua_setfield(L, -2, "array_mt");
  return 1;
}
