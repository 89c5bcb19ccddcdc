/*
** yaml_encode.c: tlr.yaml_encode.core, YAML encoding on libyaml (the public
** API is lua/tlr/yaml.lua; decoding is in yaml.c).
**
** Walks a Lua value and feeds a yaml_emitter_t, block style, keys sorted (or
** ordered by opts.order), strings quoted whenever the plain form would read
** back as something else, here (yaml_scalar.h) or under YAML 1.1 rules, which
** Kubernetes' own YAML reader still applies.  The emitter writes into a
** malloc'd buffer.
**
** The emitter and the buffers live inside a userdata whose __gc releases
** them, so a memory error raised by Lua cannot leak them.  Every failure is
** recorded there with the path of the offending value; the emitter is deleted
** and only then is `nil, msg, "EINVAL"` returned, or the error of the order
** function re-raised.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "tlr.h"
#include "yaml_scalar.h"

#define ENCODER_MT "tlr.yaml.Encoder"

typedef struct enc_key {
  const char *s; /* owned by the table being encoded (or by the anchor list) */
  size_t len;
  lua_Integer rank; /* position in opts.order; LUA_MAXINTEGER when not listed */
} enc_key;

typedef struct enc_level {
  const char *key; /* the member being written: key (mappings) or index (sequences) */
  size_t klen;
  lua_Integer index;
} enc_level;

typedef struct yaml_enc {
  yaml_emitter_t emitter;
  int open; /* emitter initialized */
  lua_State *L;
  char *buf; /* the output */
  size_t len, cap;
  enc_key *keys; /* a stack of the keys of the mappings being written */
  size_t nkeys, capkeys;
  enc_level *levels;
  int depth, caplevels;
  int array_mt, errslot, rank, order_fn; /* stack indexes; 0 when unused */
  int raised, nomem;
  char err[320];
} yaml_enc;

static void enc_release(yaml_enc *e) {
  if (e->open) yaml_emitter_delete(&e->emitter);
  free(e->buf);
  free(e->keys);
  free(e->levels);
  e->open = 0;
  e->buf = NULL;
  e->keys = NULL;
  e->levels = NULL;
  e->len = e->cap = e->nkeys = e->capkeys = 0;
  e->caplevels = 0;
}

/* encoder:close(): releases the emitter and its buffers; idempotent. */
static int yaml_encoder_close(lua_State *L) {
  enc_release(luaL_checkudata(L, 1, ENCODER_MT));
  return 0;
}

/* libyaml's write handler: appends to e->buf; 0 (failure) when out of memory. */
static int enc_write(void *data, unsigned char *chunk, size_t size) {
  yaml_enc *e = data;
  if (size > e->cap - e->len) {
    size_t cap = e->cap ? e->cap : 16384;
    while (cap - e->len < size) cap *= 2;
    char *b = realloc(e->buf, cap);
    if (!b) {
      e->nomem = 1;
      return 0;
    }
    e->buf = b;
    e->cap = cap;
  }
  memcpy(e->buf + e->len, chunk, size);
  e->len += size;
  return 1;
}

/* Writes "$.a.b[3]" for the current path into dst (truncated to size). */
static void enc_path(const yaml_enc *e, char *dst, size_t size) {
  size_t n = (size_t)snprintf(dst, size, "$");
  for (int i = 0; i < e->depth && n < size; i++) {
    const enc_level *lv = &e->levels[i];
    int plain = lv->key && lv->klen > 0 && lv->klen <= 48;
    for (size_t j = 0; plain && j < lv->klen; j++) {
      char c = lv->key[j];
      plain = c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (j > 0 && is_digit(c));
    }
    if (!lv->key)
      n += (size_t)snprintf(dst + n, size - n, "[%lld]", (long long)lv->index);
    else if (plain)
      n += (size_t)snprintf(dst + n, size - n, ".%.*s", (int)lv->klen, lv->key);
    else
      n += (size_t)snprintf(dst + n, size - n, "[\"%.*s\"]", (int)(lv->klen > 40 ? 40 : lv->klen),
                            lv->key);
  }
}

/* Records "<what> at <path>" as the failure; returns -1. */
static int enc_fail(yaml_enc *e, const char *fmt, ...) {
  char what[160], path[140];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  enc_path(e, path, sizeof path);
  snprintf(e->err, sizeof e->err, "%s at %s", what, path);
  return -1;
}

static int enc_emit(yaml_enc *e, yaml_event_t *ev) {
  if (yaml_emitter_emit(&e->emitter, ev)) return 0; /* it owns ev either way */
  if (e->nomem) return enc_fail(e, "out of memory");
  return enc_fail(e, "cannot emit: %s", e->emitter.problem ? e->emitter.problem : "unknown error");
}

static int enc_scalar(yaml_enc *e, const char *s, size_t len, yaml_scalar_style_t style) {
  yaml_event_t ev;
  if (len > INT32_MAX) return enc_fail(e, "string too long");
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, style))
    return enc_fail(e, "string is not valid UTF-8");
  return enc_emit(e, &ev);
}

/*
** YAML 1.1 numbers that the core schema reads as text (1_000, 0b101, 1:30,
** 1.5_0, 190:20:30.15): Kubernetes' YAML 1.1 reader would take them as numbers.
*/
static int yaml11_number(const char *s, size_t len) {
  const char *p = s, *end = s + len, *q;
  if (p < end && (*p == '+' || *p == '-')) p++;
  if (end - p > 2 && p[0] == '0' && (p[1] == 'b' || p[1] == 'x')) {
    int base = p[1] == 'b' ? 2 : 16;
    for (q = p + 2; q < end && (*q == '_' || digit_value(*q, base) >= 0);) q++;
    return q == end;
  }
  for (q = p; q < end && (is_digit(*q) || *q == '_');) q++;
  if (q > p && is_digit(*p) && q < end && *q == ':') {
    while (q < end && *q == ':') {
      const char *g = ++q;
      while (q < end && is_digit(*q)) q++;
      if (q == g || q - g > 2 || (q - g == 2 && *g > '5')) return 0;
    }
    if (q < end && *q == '.')
      for (q++; q < end && (is_digit(*q) || *q == '_');) q++;
    return q == end;
  }
  if (q > p && is_digit(*p) && q == end) return 1;
  if (q == end || *q != '.' || (q == p && !(q + 1 < end && is_digit(q[1])))) return 0;
  for (q++; q < end && (is_digit(*q) || *q == '_');) q++;
  if (q < end && (*q == 'e' || *q == 'E')) {
    if (++q < end && (*q == '+' || *q == '-')) q++;
    const char *x = q;
    while (q < end && is_digit(*q)) q++;
    if (q == x) return 0;
  }
  return q == end;
}

/* True when s written plain would not read back as this string, here or in YAML 1.1. */
static int enc_ambiguous(const char *s, size_t len) {
  scalar_value v;
  scalar_resolve(s, len, &v);
  if (v.kind != R_STR) return 1;
  switch (s[0]) {
    case 'y': case 'Y': case 'n': case 'N': case 'o': case 'O':
      return (len == 1 && s[0] != 'o' && s[0] != 'O') || one_of(s, len, "yes", "Yes", "YES") ||
             one_of(s, len, "no", "No", "NO") || one_of(s, len, "on", "On", "ON") ||
             one_of(s, len, "off", "Off", "OFF");
    case '<': return len == 2 && s[1] == '<'; /* the merge key */
    case '=': return len == 1;                /* the 1.1 value key */
    case '-': case '+': case '.':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      return yaml11_number(s, len) || (len >= 8 && is_digit(s[1]) && is_digit(s[2]) &&
                                       is_digit(s[3]) && s[4] == '-' && is_digit(s[5]));
    default: return 0;
  }
}

/* Strings: literal block when multi-line, quoted when ambiguous, else plain
** (libyaml itself quotes what cannot be plain: ": x", "- x", "#", " x"). */
static int enc_string(yaml_enc *e, const char *s, size_t len) {
  yaml_scalar_style_t style = YAML_PLAIN_SCALAR_STYLE;
  if (memchr(s, '\n', len)) style = YAML_LITERAL_SCALAR_STYLE;
  else if (enc_ambiguous(s, len)) style = YAML_SINGLE_QUOTED_SCALAR_STYLE;
  return enc_scalar(e, s, len, style);
}

/* Integers exactly; floats shortest-exact and always with a '.', so they re-read as floats. */
static int enc_number(yaml_enc *e, int idx) {
  char b[64];
  int n;
  lua_Number x = lua_tonumber(e->L, idx);
  if (lua_isinteger(e->L, idx))
    n = snprintf(b, sizeof b, "%lld", (long long)lua_tointeger(e->L, idx));
  else if (isnan(x))
    n = snprintf(b, sizeof b, ".nan");
  else if (isinf(x))
    n = snprintf(b, sizeof b, x > 0 ? ".inf" : "-.inf");
  else {
    n = snprintf(b, 40, "%.15g", (double)x);
    if (strtod(b, NULL) != (double)x) n = snprintf(b, 40, "%.17g", (double)x);
    if (!strchr(b, '.')) {
      char *exp = strchr(b, 'e');
      if (!exp) exp = b + n;
      memmove(exp + 2, exp, strlen(exp) + 1);
      exp[0] = '.';
      exp[1] = '0';
      n += 2;
    }
  }
  return enc_scalar(e, b, (size_t)n, YAML_PLAIN_SCALAR_STYLE);
}

static int enc_value(yaml_enc *e, int idx);

static int enc_push_level(yaml_enc *e) {
  if (e->depth >= YAML_MAX_DEPTH || !lua_checkstack(e->L, 8))
    return enc_fail(e, "nesting deeper than %d levels (a cycle?)", YAML_MAX_DEPTH);
  if (e->depth == e->caplevels) {
    int cap = e->caplevels ? 2 * e->caplevels : 16;
    enc_level *lv = realloc(e->levels, (size_t)cap * sizeof *lv);
    if (!lv) return enc_fail(e, "out of memory");
    e->levels = lv;
    e->caplevels = cap;
  }
  e->levels[e->depth++] = (enc_level){NULL, 0, 0};
  return 0;
}

/* Adds the string key on top of the stack to the key stack, with its rank. */
static int enc_add_key(yaml_enc *e) {
  lua_State *L = e->L;
  if (e->nkeys == e->capkeys) {
    size_t cap = e->capkeys ? 2 * e->capkeys : 64;
    enc_key *k = realloc(e->keys, cap * sizeof *k);
    if (!k) return enc_fail(e, "out of memory");
    e->keys = k;
    e->capkeys = cap;
  }
  enc_key *k = &e->keys[e->nkeys++];
  k->s = lua_tolstring(L, -1, &k->len);
  k->rank = LUA_MAXINTEGER;
  if (e->rank) {
    lua_pushvalue(L, -1);
    if (lua_rawget(L, e->rank) == LUA_TNUMBER) k->rank = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  return 0;
}

static int enc_keycmp(const void *pa, const void *pb) {
  const enc_key *a = pa, *b = pb;
  if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
  int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
  return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Calls order(a, b) under pcall: 1 when a goes first, 0 if not, -1 when it raised. */
static int enc_less(yaml_enc *e, const enc_key *a, const enc_key *b) {
  lua_State *L = e->L;
  lua_pushvalue(L, e->order_fn);
  lua_pushlstring(L, a->s, a->len);
  lua_pushlstring(L, b->s, b->len);
  if (tlr_pcall(L, 2, 1) != LUA_OK) {
    lua_replace(L, e->errslot);
    e->raised = 1;
    return enc_fail(e, "the order function raised an error");
  }
  int r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* A stable merge sort of a[0..n) by the order function; tmp holds n keys. */
static int enc_msort(yaml_enc *e, enc_key *a, enc_key *tmp, size_t n) {
  size_t h = n / 2, i = 0, j = h, k = 0;
  if (n < 2) return 0;
  if (enc_msort(e, a, tmp, h) || enc_msort(e, a + h, tmp, n - h)) return -1;
  while (i < h && j < n) {
    int lt = enc_less(e, &a[j], &a[i]);
    if (lt < 0) return -1;
    tmp[k++] = lt ? a[j++] : a[i++];
  }
  while (i < h) tmp[k++] = a[i++];
  while (j < n) tmp[k++] = a[j++];
  memcpy(a, tmp, n * sizeof *a);
  return 0;
}

/* Orders the keys e->keys[first..] (rank, then bytes; or the order function). */
static int enc_sort_keys(yaml_enc *e, size_t first) {
  lua_State *L = e->L;
  size_t n = e->nkeys - first;
  if (n < 2) return 0;
  qsort(e->keys + first, n, sizeof *e->keys, enc_keycmp);
  if (!e->order_fn) return 0;
  lua_createtable(L, (int)n, 0); /* anchors the keys while Lua code runs */
  for (size_t i = 0; i < n; i++) {
    lua_pushlstring(L, e->keys[first + i].s, e->keys[first + i].len);
    e->keys[first + i].s = lua_tostring(L, -1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  enc_key *tmp = malloc(n * sizeof *tmp);
  if (!tmp) return enc_fail(e, "out of memory");
  int rc = enc_msort(e, e->keys + first, tmp, n);
  free(tmp);
  return rc;
}

/* Writes the mapping t with the keys e->keys[first..]. */
static int enc_mapping(yaml_enc *e, int t, size_t first) {
  lua_State *L = e->L;
  int lv = e->depth - 1, top = lua_gettop(L);
  yaml_event_t ev;
  if (enc_sort_keys(e, first)) return -1;
  yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
  if (enc_emit(e, &ev)) return -1;
  for (size_t i = first; i < e->nkeys; i++) {
    enc_key k = e->keys[i]; /* by value: nested mappings may move the array */
    e->levels[lv].key = k.s;
    e->levels[lv].klen = k.len;
    if (enc_string(e, k.s, k.len)) return -1;
    lua_pushlstring(L, k.s, k.len);
    lua_rawget(L, t);
    if (enc_value(e, lua_gettop(L))) return -1;
    lua_pop(L, 1);
  }
  e->nkeys = first;
  lua_settop(L, top);
  yaml_mapping_end_event_initialize(&ev);
  return enc_emit(e, &ev);
}

/* Writes the sequence t[1..n]. */
static int enc_sequence(yaml_enc *e, int t, lua_Integer n) {
  lua_State *L = e->L;
  int lv = e->depth - 1;
  yaml_event_t ev;
  yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
  if (enc_emit(e, &ev)) return -1;
  for (lua_Integer i = 1; i <= n; i++) {
    e->levels[lv].index = i;
    lua_rawgeti(L, t, i);
    if (enc_value(e, lua_gettop(L))) return -1;
    lua_pop(L, 1);
  }
  yaml_sequence_end_event_initialize(&ev);
  return enc_emit(e, &ev);
}

/*
** A table is a sequence when it has the array metatable or exactly the keys
** 1..n; a mapping when all keys are strings (an unmarked empty table is {}).
** Anything else is an error naming the path.
*/
static int enc_table(yaml_enc *e, int t) {
  lua_State *L = e->L;
  lua_Integer len = (lua_Integer)lua_rawlen(L, t), nint = 0, nstr = 0, nidx = 0, nother = 0;
  size_t first = e->nkeys;
  int marked = 0, rc;
  if (lua_getmetatable(L, t)) {
    marked = lua_rawequal(L, -1, e->array_mt);
    lua_pop(L, 1);
  }
  if (enc_push_level(e)) return -1;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      if (enc_add_key(e)) return -1;
      nstr++;
    } else if (lua_isinteger(L, -1)) {
      nint++;
      nidx += lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= len;
    } else {
      nother++;
    }
  }
  e->depth--; /* the problems below belong to the table itself */
  if (nother) return enc_fail(e, "table has a key that is neither a string nor an integer");
  if (nstr && (nint || marked))
    return enc_fail(e, marked ? "array has string keys" : "table mixes string keys and indices");
  if (nint != len || nidx != len)
    return enc_fail(e, "sparse array (%lld integer keys, length %lld)", (long long)nint,
                    (long long)len);
  e->depth++;
  rc = (len || marked) ? enc_sequence(e, t, len) : enc_mapping(e, t, first);
  e->depth--;
  return rc;
}

static int enc_value(yaml_enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      return enc_string(e, s, len);
    }
    case LUA_TNUMBER: return enc_number(e, idx);
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? enc_scalar(e, "true", 4, YAML_PLAIN_SCALAR_STYLE)
                                   : enc_scalar(e, "false", 5, YAML_PLAIN_SCALAR_STYLE);
    case LUA_TNIL: return enc_scalar(e, "null", 4, YAML_PLAIN_SCALAR_STYLE);
    case LUA_TTABLE: return enc_table(e, idx);
    case LUA_TLIGHTUSERDATA:
      if (!lua_touserdata(L, idx)) return enc_scalar(e, "null", 4, YAML_PLAIN_SCALAR_STYLE);
      break;
    default: break;
  }
  return enc_fail(e, "cannot encode a %s", luaL_typename(L, idx));
}

/* Writes the stream: one document (value at index 1) or each of the list at 1. */
static int enc_stream(yaml_enc *e, int all) {
  lua_State *L = e->L;
  lua_Integer n = all ? (lua_Integer)lua_rawlen(L, 1) : 1;
  yaml_event_t ev;
  yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
  if (enc_emit(e, &ev) || (all && enc_push_level(e))) return -1;
  for (lua_Integer i = 1; i <= n; i++) {
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    if (enc_emit(e, &ev)) return -1;
    if (all) {
      e->levels[0].index = i;
      lua_rawgeti(L, 1, i);
    } else {
      lua_pushvalue(L, 1);
    }
    if (enc_value(e, lua_gettop(L))) return -1;
    lua_pop(L, 1);
    yaml_document_end_event_initialize(&ev, 1);
    if (enc_emit(e, &ev)) return -1;
  }
  yaml_stream_end_event_initialize(&ev);
  if (enc_emit(e, &ev)) return -1;
  if (!yaml_emitter_flush(&e->emitter)) return enc_fail(e, "out of memory");
  return 0;
}

static const char *const enc_opts[] = {"order", "indent", NULL};

/*
** encode(v [, opts]) -> string | nil, msg, "EINVAL"              (all = 0)
** encode_all(list [, opts]) -> string | nil, msg, "EINVAL"       (all = 1)
** opts: order = {key, ...} | function(a, b) -> boolean, indent = 2..9.
** Raises on bad options, a list that is not a sequence, or when the order
** function raises (after the emitter is released).  Upvalue 1: the array mt.
*/
static int yaml_encode_any(lua_State *L, int all) {
  luaL_checkany(L, 1);
  if (all) luaL_checktype(L, 1, LUA_TTABLE);
  tlr_checkopts(L, 2, enc_opts);
  lua_Integer indent = tlr_optinteger(L, 2, "indent", 2);
  luaL_argcheck(L, indent >= 2 && indent <= 9, 2, "option 'indent': 2..9 expected");
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1)); /* 3: array mt */
  lua_pushnil(L);                        /* 4: the order function's error */
  int ot = LUA_TNIL, rank = 0, order_fn = 0;
  if (lua_istable(L, 2)) ot = lua_getfield(L, 2, "order"); /* 5 */
  else lua_pushnil(L);
  if (ot == LUA_TTABLE) {
    lua_newtable(L); /* 6: key -> rank */
    rank = 6;
    for (lua_Integer i = 1; lua_rawgeti(L, 5, i) != LUA_TNIL; i++) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, 2, "option 'order': list of strings expected");
      lua_pushinteger(L, i);
      lua_rawset(L, rank);
    }
    lua_pop(L, 1);
  } else if (ot == LUA_TFUNCTION) {
    order_fn = 5;
  } else if (ot != LUA_TNIL) {
    luaL_argerror(L, 2, "option 'order': table or function expected");
  }
  if (all) {
    lua_Integer n = 0;
    for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) n++;
    luaL_argcheck(L, n == (lua_Integer)lua_rawlen(L, 1), 1, "list of documents expected");
  }
  yaml_enc *e = lua_newuserdatauv(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, ENCODER_MT);
  e->L = L;
  e->array_mt = 3;
  e->errslot = 4;
  e->rank = rank;
  e->order_fn = order_fn;
  if (!yaml_emitter_initialize(&e->emitter)) return luaL_error(L, "yaml: out of memory");
  e->open = 1;
  yaml_emitter_set_output(&e->emitter, enc_write, e);
  yaml_emitter_set_unicode(&e->emitter, 1);
  yaml_emitter_set_indent(&e->emitter, (int)indent);
  yaml_emitter_set_width(&e->emitter, -1);
  yaml_emitter_set_break(&e->emitter, YAML_LN_BREAK);
  int rc = enc_stream(e, all);
  yaml_emitter_delete(&e->emitter);
  e->open = 0;
  if (e->raised) {
    enc_release(e);
    lua_pushvalue(L, 4);
    return lua_error(L);
  }
  if (rc) {
    enc_release(e);
    return tlr_fail(L, "EINVAL", "%s", e->err);
  }
  lua_pushlstring(L, e->buf ? e->buf : "", e->len);
  enc_release(e);
  return 1;
}

static int yaml_encode(lua_State *L) { return yaml_encode_any(L, 0); }
static int yaml_encode_all(lua_State *L) { return yaml_encode_any(L, 1); }

/* ========== registration ========== */

static const luaL_Reg yaml_encode_funcs[] = {
  {"encode", yaml_encode},
  {"encode_all", yaml_encode_all},
  {NULL, NULL}
};

static const luaL_Reg encoder_methods[] = {{"close", yaml_encoder_close}, {NULL, NULL}};
static const luaL_Reg encoder_meta[] = {
  {"__gc", yaml_encoder_close}, {"__close", yaml_encoder_close}, {NULL, NULL}
};

int luaopen_tlr_yaml_encode_core(lua_State *L) {
  tlr_newclass(L, ENCODER_MT, encoder_methods, encoder_meta);
  luaL_newlibtable(L, yaml_encode_funcs);
  luaL_newmetatable(L, YAML_ARRAY_MT); /* shared with tlr.json */
  luaL_setfuncs(L, yaml_encode_funcs, 1);
  return 1;
}
