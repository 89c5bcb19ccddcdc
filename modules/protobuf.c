/*
** protobuf.c: proto3 schemas and decoding (tlr.protobuf.core).
** lua/tlr/protobuf.lua turns readable declarations into a normalized list
** (type names resolved to indices, fields sorted by number) and calls
** compile(); the resulting tlr.protobuf.Schema userdata keeps every
** descriptor in one block of its own memory (layout in protobuf.h), so it
** owns no C resource and needs no __gc.  Encoding is in protobuf_encode.c.
**
** Decoding never raises on bad input: it returns nil, msg, "EPROTO" naming
** the message and the field path.  Tables are written with raw access.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protobuf.h"

/* ========== compiling ========== */

static int check_option(lua_State *L, int idx, const char *key, const char *const names[]) {
  lua_getfield(L, idx, key);
  const char *s = lua_tostring(L, -1);
  for (int i = 0; s && names[i]; i++)
    if (strcmp(names[i], s) == 0) {
      lua_pop(L, 1);
      return i;
    }
  return luaL_error(L, "protobuf compile: bad '%s' %s", key, s ? s : "(missing)");
}

static lua_Integer check_int(lua_State *L, int idx, const char *key, lua_Integer lo,
                             lua_Integer hi) {
  lua_getfield(L, idx, key);
  int ok = 0;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok || v < lo || v > hi) luaL_error(L, "protobuf compile: bad '%s'", key);
  lua_pop(L, 1);
  return v;
}

/* Copies the string field key of the table at idx into *pool; returns the copy. */
static const char *pool_string(lua_State *L, int idx, const char *key, char **pool) {
  lua_getfield(L, idx, key);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  if (!s) luaL_error(L, "protobuf compile: bad '%s'", key);
  char *dst = *pool;
  memcpy(dst, s, len + 1);
  *pool += len + 1;
  lua_pop(L, 1);
  return dst;
}

static size_t string_size(lua_State *L, int idx, const char *key) {
  size_t len = 0;
  lua_getfield(L, idx, key);
  if (!lua_tolstring(L, -1, &len)) luaL_error(L, "protobuf compile: bad '%s'", key);
  lua_pop(L, 1);
  return len + 1;
}

static int value_by_number(const void *a, const void *b) {
  const pb_value *x = a, *y = b;
  if (x->number != y->number) return x->number < y->number ? -1 : 1;
  return x->order - y->order;
}

static int value_by_name(const void *a, const void *b) {
  return strcmp(((const pb_value *)a)->name, ((const pb_value *)b)->name);
}

/* Reads the field table on top of the stack into f (pool and strings as in compile). */
static void compile_field(lua_State *L, pb_field *f, char **pool, int strings, int *nstrings,
                          int nmessages, int nenums) {
  int t = lua_gettop(L);
  f->number = (uint32_t)check_int(L, t, "number", 1, 536870911);
  f->name = pool_string(L, t, "name", pool);
  f->type = (unsigned char)check_option(L, t, "type", pb_type_names);
  f->label = (unsigned char)check_option(L, t, "label", pb_label_names);
  f->key_type = f->label == L_MAP ? (unsigned char)check_option(L, t, "key", pb_type_names) : 0;
  lua_getfield(L, t, "presence");
  f->presence = (unsigned char)lua_toboolean(L, -1);
  lua_getfield(L, t, "packed");
  f->packed = (unsigned char)lua_toboolean(L, -1);
  lua_pop(L, 2);
  f->ref = -1;
  if (f->type == T_MESSAGE || f->type == T_ENUM)
    f->ref = (int)check_int(L, t, "ref", 1, f->type == T_MESSAGE ? nmessages : nenums) - 1;
  lua_getfield(L, t, "name");
  f->name_idx = ++*nstrings;
  lua_rawseti(L, strings, f->name_idx);
}

/*
** compile(messages, enums, decls) -> Schema
** messages: list of {name=, fields={{number=, name=, type=, label=, key=, ref=,
** presence=, packed=}...}} with fields ascending by number; enums: list of
** {name=, values={{name=, number=}...}}; decls: name -> declaration, kept for
** schema:type().  Raises on malformed input (protobuf.lua builds it).
*/
static int protobuf_compile(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer nm = luaL_len(L, 1), ne = luaL_len(L, 2);
  luaL_argcheck(L, nm < 1000000 && ne < 1000000, 1, "too many types");
  /* pass 1: sizes */
  size_t nfields = 0, nvalues = 0, strbytes = 0;
  for (lua_Integer i = 1; i <= nm; i++) {
    lua_rawgeti(L, 1, i);
    luaL_checktype(L, -1, LUA_TTABLE);
    strbytes += string_size(L, -1, "name");
    lua_getfield(L, -1, "fields");
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer j = 1; j <= n; j++) {
      lua_rawgeti(L, -1, j);
      luaL_checktype(L, -1, LUA_TTABLE);
      strbytes += string_size(L, -1, "name");
      lua_pop(L, 1);
    }
    nfields += (size_t)n;
    lua_pop(L, 2);
  }
  for (lua_Integer i = 1; i <= ne; i++) {
    lua_rawgeti(L, 2, i);
    luaL_checktype(L, -1, LUA_TTABLE);
    strbytes += string_size(L, -1, "name");
    lua_getfield(L, -1, "values");
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, -1);
    luaL_argcheck(L, n > 0, 2, "an enum needs at least one value");
    for (lua_Integer j = 1; j <= n; j++) {
      lua_rawgeti(L, -1, j);
      luaL_checktype(L, -1, LUA_TTABLE);
      strbytes += string_size(L, -1, "name");
      lua_pop(L, 1);
    }
    nvalues += (size_t)n;
    lua_pop(L, 2);
  }
  luaL_argcheck(L, nfields < 10000000 && nvalues < 10000000, 1, "too many fields");
  size_t size = sizeof(pb_schema) + (size_t)nm * sizeof(pb_message) + nfields * sizeof(pb_field)
                + (size_t)ne * sizeof(pb_enum) + 2 * nvalues * sizeof(pb_value) + strbytes;
  /* [messages, enums, decls, S] with user values index, decls, strings */
  pb_schema *S = lua_newuserdatauv(L, size, 3);
  memset(S, 0, size);
  luaL_setmetatable(L, SCHEMA_MT);
  int ud = lua_gettop(L);
  lua_newtable(L);  /* index: message name -> index */
  int index = lua_gettop(L);
  lua_newtable(L);  /* strings: field and enum value names */
  int strings = lua_gettop(L), nstrings = 0;
  S->nmessages = (int)nm;
  S->nenums = (int)ne;
  S->messages = (pb_message *)(S + 1);
  pb_field *fields = (pb_field *)(S->messages + nm);
  S->enums = (pb_enum *)(fields + nfields);
  pb_value *values = (pb_value *)(S->enums + ne);
  char *pool = (char *)(values + 2 * nvalues);
  /* pass 2: fill */
  for (lua_Integer i = 1; i <= nm; i++) {
    pb_message *m = &S->messages[i - 1];
    lua_rawgeti(L, 1, i);
    m->name = pool_string(L, -1, "name", &pool);
    lua_getfield(L, -1, "fields");
    m->nfields = (int)luaL_len(L, -1);
    m->fields = fields;
    for (int j = 1; j <= m->nfields; j++) {
      lua_rawgeti(L, -1, j);
      compile_field(L, &m->fields[j - 1], &pool, strings, &nstrings, (int)nm, (int)ne);
      lua_pop(L, 1);
      if (j > 1 && m->fields[j - 1].number <= m->fields[j - 2].number)
        return luaL_error(L, "protobuf compile: %s: fields not ascending by number", m->name);
    }
    fields += m->nfields;
    lua_pop(L, 2);
    lua_pushinteger(L, i - 1);
    lua_setfield(L, index, m->name);
  }
  for (lua_Integer i = 1; i <= ne; i++) {
    pb_enum *en = &S->enums[i - 1];
    lua_rawgeti(L, 2, i);
    en->name = pool_string(L, -1, "name", &pool);
    lua_getfield(L, -1, "values");
    int n = (int)luaL_len(L, -1);
    en->by_name = values;
    en->by_number = values + n;
    for (int j = 1; j <= n; j++) {
      pb_value *v = &en->by_name[j - 1];
      lua_rawgeti(L, -1, j);
      v->name = pool_string(L, -1, "name", &pool);
      v->number = (int32_t)check_int(L, -1, "number", INT32_MIN, INT32_MAX);
      v->order = j;
      lua_getfield(L, -1, "name");
      v->name_idx = ++nstrings;
      lua_rawseti(L, strings, v->name_idx);
      lua_pop(L, 1);
    }
    memcpy(en->by_number, en->by_name, (size_t)n * sizeof(pb_value));
    qsort(en->by_number, (size_t)n, sizeof(pb_value), value_by_number);
    int k = 0;
    for (int j = 0; j < n; j++)  /* keep the first alias of each number */
      if (k == 0 || en->by_number[j].number != en->by_number[k - 1].number)
        en->by_number[k++] = en->by_number[j];
    en->nnumbers = k;
    en->nnames = n;
    qsort(en->by_name, (size_t)n, sizeof(pb_value), value_by_name);
    for (int j = 0; j < k; j++)
      if (en->by_number[j].number == 0) en->zero = &en->by_number[j];
    values += 2 * n;
    lua_pop(L, 2);
  }
  lua_pushvalue(L, index);
  lua_setiuservalue(L, ud, 1);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, ud, 2);
  lua_pushvalue(L, strings);
  lua_setiuservalue(L, ud, 3);
  lua_settop(L, ud);
  return 1;
}

static pb_schema *check_schema(lua_State *L) {
  return luaL_checkudata(L, 1, SCHEMA_MT);
}

/* ========== decoding ========== */

typedef struct pb_dec {
  lua_State *L;
  const pb_schema *S;
  const pb_message *root;
  int strings;
  int depth, err_depth;
  const pb_field *path[MAX_DEPTH + 1];
  char err[160];
} pb_dec;

static int dec_fail(pb_dec *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->err, sizeof d->err, fmt, ap);
  va_end(ap);
  d->err_depth = d->depth;
  return -1;
}

typedef struct pb_in {
  const unsigned char *p, *end;
} pb_in;

/* 0, or -1 when truncated, -2 when longer than 10 bytes. */
static int get_varint(pb_in *in, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (in->p >= in->end) return -1;
    unsigned char b = *in->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return 0;
    }
  }
  return -2;
}

static int dec_varint(pb_dec *d, pb_in *in, uint64_t *out) {
  int rc = get_varint(in, out);
  if (rc == -1) return dec_fail(d, "truncated varint");
  if (rc == -2) return dec_fail(d, "varint longer than 10 bytes");
  return 0;
}

static int dec_fixed(pb_dec *d, pb_in *in, int n, uint64_t *out) {
  if (in->end - in->p < n) return dec_fail(d, "truncated %d-byte value", n);
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)in->p[i] << (8 * i);
  in->p += n;
  *out = v;
  return 0;
}

/* Reads a length prefix and splits off that many bytes as *sub. */
static int dec_len(pb_dec *d, pb_in *in, pb_in *sub) {
  uint64_t n;
  if (dec_varint(d, in, &n)) return -1;
  if (n > (uint64_t)(in->end - in->p))
    return dec_fail(d, "length %llu past the end (%ld bytes left)", (unsigned long long)n,
                    (long)(in->end - in->p));
  sub->p = in->p;
  sub->end = in->p + n;
  in->p += n;
  return 0;
}

/* Skips a field with wire type `wire` (an unknown field, or a group). */
static int dec_skip(pb_dec *d, pb_in *in, int wire, uint32_t number, int depth) {
  uint64_t v;
  pb_in sub;
  switch (wire) {
    case 0: return dec_varint(d, in, &v);
    case 1: return dec_fixed(d, in, 8, &v);
    case 5: return dec_fixed(d, in, 4, &v);
    case 2: return dec_len(d, in, &sub);
    case 3:
      if (depth >= MAX_DEPTH) return dec_fail(d, "groups nested too deep");
      for (;;) {
        if (dec_varint(d, in, &v)) return -1;
        if ((v & 7) == 4) {
          if ((v >> 3) != number) return dec_fail(d, "mismatched end of group %u", number);
          return 0;
        }
        if (dec_skip(d, in, (int)(v & 7), (uint32_t)(v >> 3), depth + 1)) return -1;
      }
    case 4: return dec_fail(d, "end of group %u without a start", number);
    default: return dec_fail(d, "invalid wire type %d (field %u)", wire, number);
  }
}

/* Reads one scalar of `type` (its wire type is checked by the caller) and pushes it. */
static int dec_scalar(pb_dec *d, pb_in *in, int type, int ref) {
  lua_State *L = d->L;
  uint64_t u = 0;
  int wire = pb_type_wire[type];
  if (wire == 2) {
    pb_in sub;
    if (dec_len(d, in, &sub)) return -1;
    lua_pushlstring(L, (const char *)sub.p, (size_t)(sub.end - sub.p));
    return 0;
  }
  if ((wire == 0 ? dec_varint(d, in, &u) : dec_fixed(d, in, wire == 1 ? 8 : 4, &u))) return -1;
  switch (type) {
    case T_DOUBLE: {
      double x;
      memcpy(&x, &u, 8);
      lua_pushnumber(L, (lua_Number)x);
      break;
    }
    case T_FLOAT: {
      uint32_t bits = (uint32_t)u;
      float x;
      memcpy(&x, &bits, 4);
      lua_pushnumber(L, (lua_Number)x);
      break;
    }
    case T_INT32: case T_SFIXED32: lua_pushinteger(L, (int32_t)(uint32_t)u); break;
    case T_UINT32: case T_FIXED32: lua_pushinteger(L, (lua_Integer)(uint32_t)u); break;
    case T_SINT32: {
      uint32_t x = (uint32_t)u;
      lua_pushinteger(L, (int32_t)((x >> 1) ^ (0u - (x & 1))));
      break;
    }
    case T_SINT64: lua_pushinteger(L, (lua_Integer)((u >> 1) ^ (0u - (u & 1)))); break;
    case T_BOOL: lua_pushboolean(L, u != 0); break;
    case T_ENUM: {
      const pb_value *v = pb_enum_find_number(&d->S->enums[ref], (int32_t)(uint32_t)u);
      if (v) lua_rawgeti(L, d->strings, v->name_idx);
      else lua_pushinteger(L, (int32_t)(uint32_t)u);
      break;
    }
    default:  /* int64, fixed64, and uint64 as two's complement */
      lua_pushinteger(L, (lua_Integer)u);
      break;
  }
  return 0;
}

/* Pushes the zero value of a scalar type. */
static void push_default(pb_dec *d, int type, int ref) {
  lua_State *L = d->L;
  switch (type) {
    case T_DOUBLE: case T_FLOAT: lua_pushnumber(L, 0); break;
    case T_BOOL: lua_pushboolean(L, 0); break;
    case T_STRING: case T_BYTES: lua_pushliteral(L, ""); break;
    case T_ENUM: {
      const pb_value *z = d->S->enums[ref].zero;
      if (z) lua_rawgeti(L, d->strings, z->name_idx);
      else lua_pushinteger(L, 0);
      break;
    }
    default: lua_pushinteger(L, 0); break;
  }
}

static int dec_message(pb_dec *d, const pb_message *m, pb_in *in, int t, int fresh);

/* Decodes a length-delimited message and pushes it as a new table. */
static int dec_new_message(pb_dec *d, pb_in *in, int ref) {
  pb_in sub;
  if (dec_len(d, in, &sub)) return -1;
  const pb_message *m = &d->S->messages[ref];
  lua_createtable(d->L, 0, m->nfields);
  return dec_message(d, m, &sub, lua_gettop(d->L), 1);
}

/* Pushes t[f.name], creating an empty table there when absent. */
static void get_container(pb_dec *d, const pb_field *f, int t) {
  lua_State *L = d->L;
  lua_rawgeti(L, d->strings, f->name_idx);
  if (lua_rawget(L, t) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_rawgeti(L, d->strings, f->name_idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, t);
  }
}

/* A map entry {1: key, 2: value} into the map table at the top of the stack. */
static int dec_map_entry(pb_dec *d, const pb_field *f, pb_in *in) {
  lua_State *L = d->L;
  pb_in entry;
  if (dec_len(d, in, &entry)) return -1;
  int map = lua_gettop(L);
  lua_pushnil(L);  /* [map, key, value] */
  lua_pushnil(L);
  while (entry.p < entry.end) {
    uint64_t tag;
    if (dec_varint(d, &entry, &tag)) return -1;
    uint32_t num = (uint32_t)(tag >> 3);
    int wire = (int)(tag & 7);
    int type = num == 1 ? f->key_type : f->type;
    if (num != 1 && num != 2) {
      if (dec_skip(d, &entry, wire, num, 0)) return -1;
      continue;
    }
    if (wire != pb_type_wire[type])
      return dec_fail(d, "map %s: wire type %d, expected %d", num == 1 ? "key" : "value", wire,
                      pb_type_wire[type]);
    if (num == 2 && type == T_MESSAGE) {
      if (dec_new_message(d, &entry, f->ref)) return -1;
    } else if (dec_scalar(d, &entry, type, num == 1 ? -1 : f->ref)) {
      return -1;
    }
    lua_replace(L, map + (int)num);
  }
  if (lua_isnil(L, map + 1)) push_default(d, f->key_type, -1), lua_replace(L, map + 1);
  if (lua_isnil(L, map + 2)) {
    if (f->type == T_MESSAGE) {
      const pb_message *vm = &d->S->messages[f->ref];
      pb_in empty = {NULL, NULL};
      lua_createtable(L, 0, vm->nfields);
      if (dec_message(d, vm, &empty, lua_gettop(L), 1)) return -1;
    } else {
      push_default(d, f->type, f->ref);
    }
    lua_replace(L, map + 2);
  }
  lua_rawset(L, map);
  return 0;
}

/* Field f of a message: one occurrence with wire type `wire`, into table t. */
static int dec_field(pb_dec *d, const pb_field *f, pb_in *in, int wire, int t) {
  lua_State *L = d->L;
  int want = pb_type_wire[f->type];
  if (f->label == L_MAP) {
    if (wire != 2) return dec_fail(d, "wire type %d, expected 2", wire);
    get_container(d, f, t);
    if (dec_map_entry(d, f, in)) return -1;
    lua_pop(L, 1);
    return 0;
  }
  if (f->label == L_REPEATED) {
    int packed = wire == 2 && want != 2;
    if (wire != want && !packed) return dec_fail(d, "wire type %d, expected %d", wire, want);
    get_container(d, f, t);
    int list = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    if (packed) {
      pb_in sub;
      if (dec_len(d, in, &sub)) return -1;
      while (sub.p < sub.end) {
        if (dec_scalar(d, &sub, f->type, f->ref)) return -1;
        lua_rawseti(L, list, ++n);
      }
    } else {
      int rc = f->type == T_MESSAGE ? dec_new_message(d, in, f->ref)
                                    : dec_scalar(d, in, f->type, f->ref);
      if (rc) return -1;
      lua_rawseti(L, list, n + 1);
    }
    lua_pop(L, 1);
    return 0;
  }
  if (wire != want) return dec_fail(d, "wire type %d, expected %d", wire, want);
  if (f->type == T_MESSAGE) {  /* a repeated occurrence merges into the first */
    lua_rawgeti(L, d->strings, f->name_idx);
    if (lua_rawget(L, t) == LUA_TTABLE) {
      pb_in sub;
      if (dec_len(d, in, &sub)) return -1;
      if (dec_message(d, &d->S->messages[f->ref], &sub, lua_gettop(L), 0)) return -1;
      lua_pop(L, 1);
      return 0;
    }
    lua_pop(L, 1);
    if (dec_new_message(d, in, f->ref)) return -1;
  } else if (dec_scalar(d, in, f->type, f->ref)) {
    return -1;
  }
  lua_rawgeti(L, d->strings, f->name_idx);
  lua_insert(L, -2);
  lua_rawset(L, t);
  return 0;
}

static const pb_field *find_field(const pb_message *m, uint32_t number, int *hint) {
  int i = *hint;
  if (i < m->nfields && m->fields[i].number == number) return &m->fields[i];
  if (i + 1 < m->nfields && m->fields[i + 1].number == number) return &m->fields[++*hint];
  int lo = 0, hi = m->nfields - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (m->fields[mid].number == number) return &m->fields[*hint = mid];
    if (m->fields[mid].number < number) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

/*
** Decodes the fields in `in` into the table at index t, then gives every
** absent scalar field (without presence) its zero value and every absent
** repeated or map field an empty table; absent messages stay nil.  `fresh`:
** t was empty before (otherwise defaults only fill what is still nil).
*/
static int dec_message(pb_dec *d, const pb_message *m, pb_in *in, int t, int fresh) {
  lua_State *L = d->L;
  if (d->depth >= MAX_DEPTH) return dec_fail(d, "nested more than %d levels", MAX_DEPTH);
  if (!lua_checkstack(L, 16)) return dec_fail(d, "out of Lua stack");
  unsigned char seen[256];
  int track = fresh && m->nfields <= (int)sizeof seen, hint = 0;
  if (track) memset(seen, 0, (size_t)m->nfields);
  while (in->p < in->end) {
    uint64_t tag;
    if (dec_varint(d, in, &tag)) return -1;
    uint32_t number = (uint32_t)(tag >> 3);
    int wire = (int)(tag & 7);
    if (number == 0 || tag >> 32) return dec_fail(d, "bad field number %llu",
                                                  (unsigned long long)(tag >> 3));
    const pb_field *f = find_field(m, number, &hint);
    if (!f) {
      if (dec_skip(d, in, wire, number, 0)) return -1;
      continue;
    }
    d->path[d->depth++] = f;
    if (dec_field(d, f, in, wire, t)) return -1;
    d->depth--;
    if (track) seen[f - m->fields] = 1;
  }
  for (int i = 0; i < m->nfields; i++) {
    const pb_field *f = &m->fields[i];
    if ((track && seen[i]) || (f->label == L_SINGLE && (f->type == T_MESSAGE || f->presence)))
      continue;
    if (!track) {  /* merging into a table decoded before: keep what is there */
      lua_rawgeti(L, d->strings, f->name_idx);
      int present = lua_rawget(L, t) != LUA_TNIL;
      lua_pop(L, 1);
      if (present) continue;
    }
    lua_rawgeti(L, d->strings, f->name_idx);
    if (f->label == L_SINGLE) push_default(d, f->type, f->ref);
    else lua_newtable(L);
    lua_rawset(L, t);
  }
  return 0;
}

/*
** schema:decode(type_name, bytes) -> table | nil, msg, "EPROTO"
** msg names the message and the field path: "decode machine.VersionResponse.
** messages.version: length 300 past the end (12 bytes left)".
*/
static int schema_decode(lua_State *L) {
  pb_schema *S = check_schema(L);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  lua_settop(L, 3);
  pb_dec d;
  d.root = pb_check_message(L, S);  /* [S, name, data, strings] */
  d.L = L;
  d.S = S;
  d.strings = 4;
  d.depth = d.err_depth = 0;
  pb_in in = {(const unsigned char *)data, (const unsigned char *)data + len};
  lua_createtable(L, 0, d.root->nfields);
  if (dec_message(&d, d.root, &in, 5, 1) == 0) return 1;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, d.root->name);
  for (int i = 0; i < d.err_depth; i++) {
    luaL_addchar(&b, '.');
    luaL_addstring(&b, d.path[i]->name);
  }
  luaL_addstring(&b, ": ");
  luaL_addstring(&b, d.err);
  luaL_pushresult(&b);
  return tlr_fail(L, "EPROTO", "decode %s", lua_tostring(L, -1));
}

/* schema:type(name) -> the normalized declaration of a message or enum, or nil */
static int schema_type(lua_State *L) {
  check_schema(L);
  luaL_checkstring(L, 2);
  lua_getiuservalue(L, 1, 2);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int schema_tostring(lua_State *L) {
  pb_schema *S = check_schema(L);
  lua_pushfstring(L, SCHEMA_MT " (%d messages, %d enums)", S->nmessages, S->nenums);
  return 1;
}

static const luaL_Reg schema_methods[] = {
  {"decode", schema_decode},
  {"type", schema_type},
  {NULL, NULL}
};

static const luaL_Reg schema_meta[] = {
  {"__tostring", schema_tostring},
  {NULL, NULL}
};

static const luaL_Reg protobuf_funcs[] = {
  {"compile", protobuf_compile},
  {NULL, NULL}
};

/* The module also carries the Schema methods table, which protobuf.lua completes with encode. */
int luaopen_tlr_protobuf_core(lua_State *L) {
  tlr_newclass(L, SCHEMA_MT, schema_methods, schema_meta);
  luaL_newlib(L, protobuf_funcs);
  luaL_getmetatable(L, SCHEMA_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "Schema");
  lua_pop(L, 1);
  return 1;
}
