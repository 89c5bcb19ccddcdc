/*
** yaml.c: tlr.yaml.core, YAML decoding on libyaml (encoding is in
** yaml_encode.c, the scalar rules both share in yaml_scalar.h).
**
** Decoding builds Lua values straight from parser events, with no node tree
** in between.  Plain scalars are typed by the YAML 1.2 core schema, plus the
** 0777 octals that the Go readers of Kubernetes and Talos still take; null is
** the light userdata NULL (== cjson.null) and sequences get the array
** metatable "tlr.json.array" that tlr.json shares.  Mapping keys are strings;
** duplicates are errors; `<<` merges; aliases are counted as the nodes they
** expand to, so an alias bomb fails instead of blowing up later users.
**
** The parser lives inside a userdata whose __gc releases it, so even a memory
** error raised by Lua cannot leak it.  Every other failure is recorded in the
** userdata, the parser is released, and only then is `nil, msg, "EINVAL"`
** returned.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "tlr.h"
#include "yaml_scalar.h"

#define DECODER_MT "tlr.yaml.Decoder"
#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

/* ========== decode ========== */

typedef struct yaml_dec {
  yaml_parser_t parser;
  yaml_event_t ev;
  int open;   /* parser initialized */
  int has_ev; /* ev holds an event to delete */
  lua_State *L;
  const char *input;
  int array_mt, anchors, counts; /* stack indexes: mt, name -> value, name -> nodes */
  int nil_nulls, depth;
  lua_Integer nodes, max_nodes;
  char err[320];
} yaml_dec;

static void dec_release(yaml_dec *d) {
  if (d->has_ev) yaml_event_delete(&d->ev);
  if (d->open) yaml_parser_delete(&d->parser);
  d->has_ev = d->open = 0;
}

/* decoder:close(): releases the parser; idempotent (also __gc, __close). */
static int yaml_decoder_close(lua_State *L) {
  dec_release(luaL_checkudata(L, 1, DECODER_MT));
  return 0;
}

/* Records "line L, column C: <msg>" (1-based) as the failure; returns -1. */
static int dec_fail(yaml_dec *d, const yaml_mark_t *m, const char *fmt, ...) {
  va_list ap;
  int n = snprintf(d->err, sizeof d->err, "line %zu, column %zu: ", m->line + 1, m->column + 1);
  va_start(ap, fmt);
  vsnprintf(d->err + n, sizeof d->err - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

static int dec_parser_error(yaml_dec *d) {
  yaml_parser_t *p = &d->parser;
  const char *problem = p->problem ? p->problem : "cannot parse the document";
  if (p->error == YAML_MEMORY_ERROR) {
    snprintf(d->err, sizeof d->err, "out of memory");
    return -1;
  }
  if (p->error == YAML_READER_ERROR) { /* only an offset: count lines up to it */
    yaml_mark_t m = {0, 0, 0};
    for (size_t i = 0; i < p->problem_offset && d->input[i]; i++) {
      if (d->input[i] == '\n') m.line++, m.column = 0;
      else m.column++;
    }
    return dec_fail(d, &m, "%s", problem);
  }
  const yaml_mark_t *pm = &p->problem_mark, *cm = &p->context_mark;
  if (p->context && (cm->line != pm->line || cm->column != pm->column))
    return dec_fail(d, pm, "%s (%s at line %zu, column %zu)", problem, p->context, cm->line + 1,
                    cm->column + 1);
  if (p->context) return dec_fail(d, pm, "%s (%s)", problem, p->context);
  return dec_fail(d, pm, "%s", problem);
}

/* Deletes the current event and parses the next one. */
static int dec_next(yaml_dec *d) {
  if (d->has_ev) yaml_event_delete(&d->ev);
  d->has_ev = 0;
  if (!yaml_parser_parse(&d->parser, &d->ev)) return dec_parser_error(d);
  d->has_ev = 1;
  return 0;
}

static int dec_count(yaml_dec *d, lua_Integer n) {
  d->nodes += n;
  if (d->nodes > d->max_nodes)
    return dec_fail(d, &d->ev.start_mark,
                    "the document expands to more than %lld nodes (an alias bomb?)",
                    (long long)d->max_nodes);
  return 0;
}

static int is_null(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

/* Pushes the current scalar event's value, honouring explicit !!tags. */
static int dec_scalar(yaml_dec *d) {
  lua_State *L = d->L;
  const yaml_event_t *ev = &d->ev;
  const char *s = (const char *)ev->data.scalar.value;
  const char *tag = (const char *)ev->data.scalar.tag;
  size_t len = ev->data.scalar.length;
  int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  scalar_value v = {R_STR, 0, 0, 0};
  if (tag && !strncmp(tag, YAML_TAG_PREFIX, sizeof YAML_TAG_PREFIX - 1)) {
    const char *t = tag + sizeof YAML_TAG_PREFIX - 1;
    int want = !strcmp(t, "null") ? R_NULL : !strcmp(t, "bool") ? R_BOOL
             : !strcmp(t, "int") ? R_INT : !strcmp(t, "float") ? R_FLOAT : R_STR;
    if (want != R_STR) {
      scalar_resolve(s, len, &v);
      if (want == R_FLOAT && v.kind == R_INT) v.kind = R_FLOAT, v.n = (lua_Number)v.i;
      if (v.kind != want)
        return dec_fail(d, &ev->start_mark, "'%s' is not a valid !!%s", s, t);
    }
  } else if (plain && (!tag || strcmp(tag, "!") != 0)) {
    scalar_resolve(s, len, &v); /* untagged, or an application tag we do not know */
  }
  switch (v.kind) {
    case R_NULL: lua_pushlightuserdata(L, NULL); break;
    case R_BOOL: lua_pushboolean(L, v.b); break;
    case R_INT: lua_pushinteger(L, v.i); break;
    case R_FLOAT: lua_pushnumber(L, v.n); break;
    default: lua_pushlstring(L, s, len); break;
  }
  return dec_count(d, 1);
}

/* Pushes the value an alias refers to. */
static int dec_alias(yaml_dec *d) {
  lua_State *L = d->L;
  const char *name = (const char *)d->ev.data.alias.anchor;
  lua_pushstring(L, name);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, d->anchors) == LUA_TNIL)
    return dec_fail(d, &d->ev.start_mark, "unknown anchor '%s'", name);
  lua_insert(L, -2); /* [value, name] */
  lua_rawget(L, d->counts);
  lua_Integer n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return dec_count(d, n);
}

static int dec_value(yaml_dec *d);

static int dec_enter(yaml_dec *d) {
  if (++d->depth > YAML_MAX_DEPTH || !lua_checkstack(d->L, 8))
    return dec_fail(d, &d->ev.start_mark, "nesting deeper than %d levels", YAML_MAX_DEPTH);
  return dec_count(d, 1);
}

static int dec_sequence(yaml_dec *d) {
  lua_State *L = d->L;
  lua_Integer n = 0;
  if (dec_enter(d)) return -1;
  lua_newtable(L);
  lua_pushvalue(L, d->array_mt);
  lua_setmetatable(L, -2);
  for (;;) {
    if (dec_next(d)) return -1;
    if (d->ev.type == YAML_SEQUENCE_END_EVENT) break;
    if (dec_value(d)) return -1;
    n++;
    if (d->nil_nulls && is_null(L, -1)) lua_pop(L, 1);
    else lua_rawseti(L, -2, n);
  }
  d->depth--;
  return 0;
}

/* Adds the value on top (a `<<` value) to the merge list at stack index *list. */
static int dec_merge_add(yaml_dec *d, int *list, const yaml_mark_t *m) {
  lua_State *L = d->L;
  int v = lua_gettop(L);
  int ok = lua_type(L, v) == LUA_TTABLE;
  int seq = ok && lua_getmetatable(L, v) && (lua_pop(L, 1), 1);
  if (!*list) {
    lua_newtable(L);
    lua_insert(L, v);
    *list = v++;
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, *list);
  if (ok && !seq) {
    lua_rawseti(L, *list, ++n);
    return 0;
  }
  for (lua_Integer i = 1; ok && lua_rawgeti(L, v, i) != LUA_TNIL; i++) {
    ok = lua_type(L, -1) == LUA_TTABLE && !lua_getmetatable(L, -1);
    if (ok) lua_rawseti(L, *list, ++n);
  }
  if (!ok) return dec_fail(d, m, "a merge key '<<' needs a mapping or a list of mappings");
  lua_pop(L, 2); /* nil, the list value */
  return 0;
}

/* Copies the keys of every merged mapping that the mapping t lacks; first wins. */
static void dec_merge_apply(lua_State *L, int t, int list) {
  for (lua_Integer i = 1; lua_rawgeti(L, list, i) == LUA_TTABLE; i++) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushvalue(L, -2);
      if (lua_rawget(L, t) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, t);
      } else {
        lua_pop(L, 2);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Pushes the current key event as a string; *merge is set for a plain `<<`. */
static int dec_key(yaml_dec *d, int *merge) {
  lua_State *L = d->L;
  const yaml_event_t *ev = &d->ev;
  *merge = 0;
  if (ev->type == YAML_ALIAS_EVENT) {
    if (dec_alias(d)) return -1;
    if (lua_type(L, -1) != LUA_TSTRING)
      return dec_fail(d, &ev->start_mark, "alias '*%s' used as a key is not a string",
                      ev->data.alias.anchor);
    return 0;
  }
  if (ev->type != YAML_SCALAR_EVENT)
    return dec_fail(d, &ev->start_mark, "complex mapping keys are not supported");
  const char *s = (const char *)ev->data.scalar.value, *tag = (const char *)ev->data.scalar.tag;
  if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !strcmp(s, "<<") &&
      (!tag || !strcmp(tag, YAML_TAG_PREFIX "merge"))) {
    *merge = 1;
    return 0;
  }
  lua_pushlstring(L, s, ev->data.scalar.length);
  if (ev->data.scalar.anchor) { /* &a key: the anchor names the key's text */
    lua_pushstring(L, (const char *)ev->data.scalar.anchor);
    lua_pushvalue(L, -1);
    lua_pushvalue(L, -3);
    lua_rawset(L, d->anchors);
    lua_pushinteger(L, 1);
    lua_rawset(L, d->counts);
  }
  return dec_count(d, 1);
}

/*
** Builds a mapping.  Keys are strings (the key's text); a duplicate key is an
** error, as Kubernetes makes it.  `<<` values are merged when the mapping
** ends, so explicit keys win wherever they appear.
*/
static int dec_mapping(yaml_dec *d) {
  lua_State *L = d->L;
  int list = 0, nulls = 0, merge;
  if (dec_enter(d)) return -1;
  lua_newtable(L);
  int t = lua_gettop(L);
  for (;;) {
    if (dec_next(d)) return -1;
    if (d->ev.type == YAML_MAPPING_END_EVENT) break;
    yaml_mark_t km = d->ev.start_mark;
    if (dec_key(d, &merge) || dec_next(d) || dec_value(d)) return -1;
    if (merge) {
      if (dec_merge_add(d, &list, &km)) return -1;
      continue;
    }
    lua_pushvalue(L, -2);
    if (lua_rawget(L, t) != LUA_TNIL)
      return dec_fail(d, &km, "duplicate key '%s'", lua_tostring(L, -3));
    lua_pop(L, 1);
    nulls |= is_null(L, -1);
    lua_rawset(L, t);
  }
  if (list) {
    dec_merge_apply(L, t, list);
    lua_settop(L, t);
  }
  if (d->nil_nulls && nulls) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
      if (is_null(L, -1)) {
        lua_pushvalue(L, -2);
        lua_pushnil(L);
        lua_rawset(L, t); /* clearing a field during lua_next is allowed */
      }
      lua_pop(L, 1);
    }
  }
  d->depth--;
  return 0;
}

/* Pushes the node that starts with the current event and records its anchor. */
static int dec_value(yaml_dec *d) {
  lua_State *L = d->L;
  const yaml_event_t *ev = &d->ev;
  const yaml_char_t *anchor;
  int rc;
  switch (ev->type) {
    case YAML_ALIAS_EVENT: return dec_alias(d);
    case YAML_SCALAR_EVENT: anchor = ev->data.scalar.anchor; break;
    case YAML_SEQUENCE_START_EVENT: anchor = ev->data.sequence_start.anchor; break;
    case YAML_MAPPING_START_EVENT: anchor = ev->data.mapping_start.anchor; break;
    default: return dec_fail(d, &ev->start_mark, "unexpected event %d", (int)ev->type);
  }
  lua_Integer before = d->nodes;
  if (anchor) lua_pushstring(L, (const char *)anchor);
  if (ev->type == YAML_SCALAR_EVENT) rc = dec_scalar(d);
  else if (ev->type == YAML_SEQUENCE_START_EVENT) rc = dec_sequence(d);
  else rc = dec_mapping(d);
  if (rc || !anchor) return rc;
  lua_pushvalue(L, -2); /* [anchor, value, anchor] */
  lua_pushvalue(L, -2);
  lua_rawset(L, d->anchors);
  lua_pushvalue(L, -2);
  lua_pushinteger(L, d->nodes - before);
  lua_rawset(L, d->counts);
  lua_remove(L, -2);
  return 0;
}

/* Parses the stream; pushes the first document's value, or the list of all. */
static int dec_stream(yaml_dec *d, int all) {
  lua_State *L = d->L;
  lua_Integer n = 0;
  if (all) {
    lua_newtable(L);
    lua_pushvalue(L, d->array_mt);
    lua_setmetatable(L, -2);
  }
  if (dec_next(d)) return -1; /* STREAM-START */
  for (;;) {
    if (dec_next(d)) return -1;
    if (d->ev.type == YAML_STREAM_END_EVENT) break;
    lua_newtable(L); /* anchors are per document */
    lua_replace(L, d->anchors);
    lua_newtable(L);
    lua_replace(L, d->counts);
    if (dec_next(d) || dec_value(d) || dec_next(d)) return -1; /* node, DOCUMENT-END */
    if (!all) {
      if (d->nil_nulls && is_null(L, -1)) lua_pushnil(L);
      return 0;
    }
    lua_rawseti(L, -2, ++n);
  }
  if (!all) {
    if (d->nil_nulls) lua_pushnil(L);
    else lua_pushlightuserdata(L, NULL);
  }
  return 0;
}

static const char *const dec_opts[] = {"null", "max_nodes", NULL};

/*
** decode(s [, opts]) -> value | nil, msg, "EINVAL"          (all = 0)
** decode_all(s [, opts]) -> {doc, ...} | nil, msg, "EINVAL" (all = 1)
** opts: null = "sentinel" | "nil", max_nodes = expanded node cap.
** Raises on a non-string input or bad options.  Upvalue 1: the array mt.
*/
static int yaml_decode_any(lua_State *L, int all) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  tlr_checkopts(L, 2, dec_opts);
  const char *mode = tlr_optstring(L, 2, "null", "sentinel", NULL);
  lua_Integer max_nodes = (lua_Integer)(len < 500000 ? 1000000 : 2 * len);
  max_nodes = tlr_optinteger(L, 2, "max_nodes", max_nodes);
  luaL_argcheck(L, !strcmp(mode, "sentinel") || !strcmp(mode, "nil"), 2,
                "option 'null': \"sentinel\" or \"nil\" expected");
  luaL_argcheck(L, max_nodes > 0, 2, "option 'max_nodes': positive integer expected");
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1)); /* 3: array mt */
  lua_newtable(L);                       /* 4: anchors */
  lua_newtable(L);                       /* 5: node counts */
  yaml_dec *d = lua_newuserdatauv(L, sizeof *d, 0);
  memset(d, 0, sizeof *d);
  luaL_setmetatable(L, DECODER_MT);
  d->L = L;
  d->input = s;
  d->array_mt = 3;
  d->anchors = 4;
  d->counts = 5;
  d->nil_nulls = mode[0] == 'n';
  d->max_nodes = max_nodes;
  if (!yaml_parser_initialize(&d->parser)) return luaL_error(L, "yaml: out of memory");
  d->open = 1;
  yaml_parser_set_input_string(&d->parser, (const unsigned char *)s, len);
  int rc = dec_stream(d, all);
  dec_release(d);
  if (rc) return tlr_fail(L, "EINVAL", "%s", d->err);
  return 1;
}

static int yaml_decode(lua_State *L) { return yaml_decode_any(L, 0); }
static int yaml_decode_all(lua_State *L) { return yaml_decode_any(L, 1); }

/* ========== registration ========== */

static const luaL_Reg yaml_funcs[] = {
  {"decode", yaml_decode},
  {"decode_all", yaml_decode_all},
  {NULL, NULL}
};

static const luaL_Reg decoder_methods[] = {{"close", yaml_decoder_close}, {NULL, NULL}};
static const luaL_Reg decoder_meta[] = {
  {"__gc", yaml_decoder_close}, {"__close", yaml_decoder_close}, {NULL, NULL}
};

int luaopen_tlr_yaml_core(lua_State *L) {
  tlr_newclass(L, DECODER_MT, decoder_methods, decoder_meta);
  luaL_newlibtable(L, yaml_funcs);
  luaL_newmetatable(L, YAML_ARRAY_MT); /* shared with tlr.json */
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "array_mt");
  luaL_setfuncs(L, yaml_funcs, 1);
  lua_pushlightuserdata(L, NULL); /* the null sentinel, == cjson.null */
  lua_setfield(L, -2, "null");
  lua_pushstring(L, yaml_get_version_string());
  lua_setfield(L, -2, "libyaml");
  return 1;
}
