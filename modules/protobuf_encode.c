/*
** protobuf_encode.c: proto3 encoding with a compiled schema
** (tlr.protobuf_encode.core; its encode becomes the Schema method
** schema:encode, see lua/tlr/protobuf.lua; the layout is in protobuf.h).
**
** The output buffer starts on the C stack and moves into userdata boxes on
** the Lua stack as it grows, so a programmer error raised halfway (unknown
** field, wrong Lua type) leaks nothing.  Tables are read with raw access:
** no Lua code runs while encoding.  Fields go out in number order, proto3
** zero values stay out unless the field has presence, repeated scalars are
** packed, and map entries are sorted by key, so equal tables give equal bytes.
*/
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "protobuf.h"

typedef struct pb_enc {
  lua_State *L;
  const pb_schema *S;
  const pb_message *root;
  int strings;           /* stack index of the strings table */
  int box;               /* stack slot of the output's userdata box */
  char *data;
  size_t len, cap;
  int depth;
  struct { const pb_field *field; lua_Integer index; } path[MAX_DEPTH + 1];
  char init[512];
} pb_enc;

/* Raises "encode <Message>.<field>[i]...: <msg>". */
static int enc_error(pb_enc *e, const char *fmt, ...) {
  lua_State *L = e->L;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "encode ");
  luaL_addstring(&b, e->root->name);
  for (int i = 0; i < e->depth; i++) {
    luaL_addchar(&b, '.');
    luaL_addstring(&b, e->path[i].field->name);
    if (e->path[i].index > 0) {
      lua_pushfstring(L, "[%I]", (LUAI_UACINT)e->path[i].index);
      luaL_addvalue(&b);
    }
  }
  luaL_addstring(&b, ": ");
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  luaL_addvalue(&b);
  luaL_pushresult(&b);
  return lua_error(L);
}

static void enc_grow(pb_enc *e, size_t need) {
  if (need > MAX_LEN || e->len > MAX_LEN - need) enc_error(e, "message larger than 2 GiB");
  size_t cap = e->cap * 2;
  while (cap < e->len + need) cap *= 2;
  char *data = lua_newuserdatauv(e->L, cap, 0);
  memcpy(data, e->data, e->len);
  lua_replace(e->L, e->box);
  e->data = data;
  e->cap = cap;
}

static inline void enc_need(pb_enc *e, size_t n) {
  if (e->cap - e->len < n) enc_grow(e, n);
}

static void put_varint(pb_enc *e, uint64_t v) {
  enc_need(e, 10);
  unsigned char *p = (unsigned char *)e->data + e->len;
  while (v >= 0x80) {
    *p++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *p++ = (unsigned char)v;
  e->len = (size_t)(p - (unsigned char *)e->data);
}

static void put_fixed(pb_enc *e, uint64_t v, int n) {
  enc_need(e, (size_t)n);
  for (int i = 0; i < n; i++) e->data[e->len++] = (char)(v >> (8 * i));
}

static void put_bytes(pb_enc *e, const char *s, size_t len) {
  put_varint(e, len);
  enc_need(e, len);
  memcpy(e->data + e->len, s, len);
  e->len += len;
}

static void put_tag(pb_enc *e, uint32_t number, int wire) {
  put_varint(e, ((uint64_t)number << 3) | (uint64_t)wire);
}

/* Starts a length-delimited part: one byte is reserved for its length. */
static size_t len_begin(pb_enc *e) {
  enc_need(e, 1);
  return e->len++;
}

/* Writes the length of the part begun at mark, moving it when the length needs more bytes. */
static void len_end(pb_enc *e, size_t mark) {
  size_t start = mark + 1, n = e->len - start;
  if (n > MAX_LEN) enc_error(e, "message larger than 2 GiB");
  int k = 1;
  for (uint64_t v = n; v >= 0x80; v >>= 7) k++;
  if (k > 1) {
    enc_need(e, (size_t)k - 1);
    memmove(e->data + start + k - 1, e->data + start, n);
    e->len += (size_t)k - 1;
  }
  unsigned char *p = (unsigned char *)e->data + mark;  /* k bytes are free there now */
  uint64_t v = n;
  while (v >= 0x80) {
    *p++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *p = (unsigned char)v;
}

typedef struct pb_scalar {
  uint64_t u;            /* integers, bool, enum, and float/double bits */
  const char *s;         /* string, bytes */
  size_t len;
} pb_scalar;

static lua_Integer enc_integer(pb_enc *e, int idx, lua_Integer lo, lua_Integer hi, int type) {
  int t = lua_type(e->L, idx), ok = 0;
  if (t != LUA_TNUMBER)
    enc_error(e, "%s expected, got %s", pb_type_names[type], lua_typename(e->L, t));
  lua_Integer v = lua_tointegerx(e->L, idx, &ok);
  if (!ok) enc_error(e, "%s expected, got a number with a fraction", pb_type_names[type]);
  if (v < lo || v > hi)
    enc_error(e, "%I is out of range for %s", (LUAI_UACINT)v, pb_type_names[type]);
  return v;
}

/*
** Checks the Lua value at idx against `type` (ref: the enum for T_ENUM) and
** stores its wire payload in *v.  Returns 0 for the type's zero value (a
** proto3 field without presence then stays out).  Raises on a bad value.
*/
static int enc_scalar(pb_enc *e, int type, int ref, int idx, pb_scalar *v) {
  lua_State *L = e->L;
  int t = lua_type(L, idx);
  switch (type) {
    case T_DOUBLE:
    case T_FLOAT: {
      if (t != LUA_TNUMBER) enc_error(e, "number expected, got %s", lua_typename(L, t));
      double d = (double)lua_tonumber(L, idx);
      if (type == T_FLOAT) {
        float f = (float)d;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        v->u = bits;
      } else {
        memcpy(&v->u, &d, 8);
      }
      return v->u != 0;  /* -0.0 counts as set, as in Go and C++ */
    }
    case T_INT32:
    case T_SINT32:
    case T_SFIXED32:
      v->u = (uint64_t)enc_integer(e, idx, INT32_MIN, INT32_MAX, type);
      break;
    case T_UINT32:
    case T_FIXED32:
      v->u = (uint64_t)enc_integer(e, idx, 0, UINT32_MAX, type);
      break;
    case T_INT64:
    case T_UINT64:
    case T_SINT64:
    case T_FIXED64:
    case T_SFIXED64:
      v->u = (uint64_t)enc_integer(e, idx, LUA_MININTEGER, LUA_MAXINTEGER, type);
      break;
    case T_BOOL:
      if (t != LUA_TBOOLEAN) enc_error(e, "boolean expected, got %s", lua_typename(L, t));
      v->u = (uint64_t)lua_toboolean(L, idx);
      break;
    case T_ENUM: {
      const pb_enum *en = &e->S->enums[ref];
      if (t == LUA_TSTRING) {
        const pb_value *ev = pb_enum_find_name(en, lua_tostring(L, idx));
        if (!ev) enc_error(e, "unknown %s name '%s'", en->name, lua_tostring(L, idx));
        v->u = (uint64_t)(int64_t)ev->number;
      } else if (t == LUA_TNUMBER) {
        v->u = (uint64_t)enc_integer(e, idx, INT32_MIN, INT32_MAX, type);
      } else {
        enc_error(e, "%s name or number expected, got %s", en->name, lua_typename(L, t));
      }
      break;
    }
    case T_STRING:
    case T_BYTES:
      if (t != LUA_TSTRING) enc_error(e, "string expected, got %s", lua_typename(L, t));
      v->s = lua_tolstring(L, idx, &v->len);
      return v->len != 0;
    default:
      return enc_error(e, "internal: bad scalar type");
  }
  return v->u != 0;
}

/* Writes a scalar's payload (no tag). */
static void put_scalar(pb_enc *e, int type, const pb_scalar *v) {
  switch (type) {
    case T_DOUBLE: case T_FIXED64: case T_SFIXED64: put_fixed(e, v->u, 8); break;
    case T_FLOAT: case T_FIXED32: case T_SFIXED32: put_fixed(e, v->u, 4); break;
    case T_SINT32: {
      uint32_t u = (uint32_t)v->u;
      put_varint(e, (u << 1) ^ (0u - (u >> 31)));
      break;
    }
    case T_SINT64: put_varint(e, (v->u << 1) ^ (0u - (v->u >> 63))); break;
    case T_STRING: case T_BYTES: put_bytes(e, v->s, v->len); break;
    default: put_varint(e, v->u); break;  /* int32 and enum sign-extend to 10 bytes */
  }
}

static void enc_message(pb_enc *e, const pb_message *m, int t);

/* Writes the value at idx (of type/ref) with its tag; `always` also writes zero values. */
static void enc_value(pb_enc *e, uint32_t number, int type, int ref, int idx, int always) {
  if (type == T_MESSAGE) {
    int t = lua_type(e->L, idx);
    if (t != LUA_TTABLE) enc_error(e, "table expected, got %s", lua_typename(e->L, t));
    put_tag(e, number, 2);
    size_t mark = len_begin(e);
    enc_message(e, &e->S->messages[ref], lua_absindex(e->L, idx));
    len_end(e, mark);
    return;
  }
  pb_scalar v;
  if (enc_scalar(e, type, ref, idx, &v) || always) {
    put_tag(e, number, pb_type_wire[type]);
    put_scalar(e, type, &v);
  }
}

/* The list at the top of the stack for repeated field f. */
static void enc_repeated(pb_enc *e, const pb_field *f) {
  lua_State *L = e->L;
  int list = lua_gettop(L);
  if (!lua_istable(L, list)) enc_error(e, "list expected, got %s", luaL_typename(L, list));
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  if (n == 0) {
    lua_pushnil(L);
    if (lua_next(L, list)) enc_error(e, "list expected, got a table with keys");
    return;
  }
  int packed = f->packed && pb_type_wire[f->type] != 2;
  size_t mark = 0;
  if (packed) {
    put_tag(e, f->number, 2);
    mark = len_begin(e);
  }
  for (lua_Integer i = 1; i <= n; i++) {
    e->path[e->depth - 1].index = i;
    if (lua_rawgeti(L, list, i) == LUA_TNIL) enc_error(e, "nil in a list (a hole?)");
    if (packed) {
      pb_scalar v;
      enc_scalar(e, f->type, f->ref, -1, &v);
      put_scalar(e, f->type, &v);
    } else {
      enc_value(e, f->number, f->type, f->ref, -1, 1);
    }
    lua_pop(L, 1);
  }
  e->path[e->depth - 1].index = 0;
  if (packed) len_end(e, mark);
}

typedef struct map_key {
  uint64_t u;            /* integers and bools (signed order via `sign`) */
  const char *s;
  size_t len;
  lua_Integer pos;       /* index of the key in the keys table */
} map_key;

static int map_key_cmp_int(const void *a, const void *b) {
  int64_t x = (int64_t)((const map_key *)a)->u, y = (int64_t)((const map_key *)b)->u;
  return x < y ? -1 : x > y;
}

static int map_key_cmp_uint(const void *a, const void *b) {
  uint64_t x = ((const map_key *)a)->u, y = ((const map_key *)b)->u;
  return x < y ? -1 : x > y;
}

static int map_key_cmp_str(const void *a, const void *b) {
  const map_key *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
  return c ? c : (x->len < y->len ? -1 : x->len > y->len);
}

/*
** The map at the top of the stack for map field f: one entry message
** {1: key, 2: value} per pair, keys in sorted order (bytewise for strings,
** numeric for integers, false before true), so the output is deterministic.
** Key and value are written even when zero, as protoc's encoders do.
*/
static void enc_map(pb_enc *e, const pb_field *f) {
  lua_State *L = e->L;
  int map = lua_gettop(L);
  if (!lua_istable(L, map)) enc_error(e, "table expected, got %s", luaL_typename(L, map));
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, map)) {
    n++;
    lua_pop(L, 1);
  }
  if (n == 0) return;
  if ((size_t)n > SIZE_MAX / sizeof(map_key)) enc_error(e, "map too large");
  map_key *keys = lua_newuserdatauv(L, (size_t)n * sizeof(map_key), 0);
  lua_createtable(L, (int)n, 0);  /* [map, keys, ktable] */
  int ktable = lua_gettop(L);
  int kt = f->key_type, signed_order = 0;
  lua_Integer i = 0;
  lua_pushnil(L);
  while (lua_next(L, map)) {
    lua_pop(L, 1);
    map_key *k = &keys[i];
    k->pos = ++i;
    if (kt == T_STRING) {
      if (lua_type(L, -1) != LUA_TSTRING)
        enc_error(e, "map key: string expected, got %s", luaL_typename(L, -1));
      k->s = lua_tolstring(L, -1, &k->len);
    } else {
      pb_scalar v;
      enc_scalar(e, kt, -1, -1, &v);
      k->u = v.u;  /* signed types are sign-extended already */
      signed_order = kt != T_UINT32 && kt != T_UINT64 && kt != T_FIXED32 && kt != T_FIXED64 &&
                     kt != T_BOOL;
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, ktable, i);
  }
  qsort(keys, (size_t)n, sizeof(map_key),
        kt == T_STRING ? map_key_cmp_str : signed_order ? map_key_cmp_int : map_key_cmp_uint);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, ktable, keys[i].pos);  /* [.., key] */
    lua_pushvalue(L, -1);
    lua_rawget(L, map);                   /* [.., key, value] */
    put_tag(e, f->number, 2);
    size_t mark = len_begin(e);
    enc_value(e, 1, kt, -1, -2, 1);
    enc_value(e, 2, f->type, f->ref, -1, 1);
    len_end(e, mark);
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
}

/* Raises about the first key of table t that is not a field of m. */
static void enc_unknown_key(pb_enc *e, const pb_message *m, int t) {
  lua_State *L = e->L;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      enc_error(e, "field names are strings, got a %s key", luaL_typename(L, -1));
    const char *k = lua_tostring(L, -1);
    int found = 0;
    for (int i = 0; i < m->nfields && !found; i++) found = strcmp(m->fields[i].name, k) == 0;
    if (!found) enc_error(e, "unknown field '%s' in %s", k, m->name);
  }
  enc_error(e, "internal: no unknown key found");
}

/* Encodes the message table at absolute index t, fields in number order. */
static void enc_message(pb_enc *e, const pb_message *m, int t) {
  lua_State *L = e->L;
  if (e->depth >= MAX_DEPTH) enc_error(e, "nested more than %d levels (a cycle?)", MAX_DEPTH);
  if (!lua_checkstack(L, 16)) enc_error(e, "out of Lua stack");
  int known = 0;
  for (int i = 0; i < m->nfields; i++) {
    const pb_field *f = &m->fields[i];
    lua_rawgeti(L, e->strings, f->name_idx);
    if (lua_rawget(L, t) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    known++;
    e->path[e->depth].field = f;
    e->path[e->depth].index = 0;
    e->depth++;
    if (f->label == L_REPEATED) enc_repeated(e, f);
    else if (f->label == L_MAP) enc_map(e, f);
    else enc_value(e, f->number, f->type, f->ref, -1, f->presence);
    e->depth--;
    lua_pop(L, 1);
  }
  int keys = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    keys++;
    lua_pop(L, 1);
  }
  if (keys != known) enc_unknown_key(e, m, t);
}

/*
** encode(schema, type_name, value) -> bytes   (the method schema:encode)
** Raises on an unknown type, an unknown field name or a wrong value, with
** the field path ("encode machine.ResetRequest.system_partitions_to_wipe[2].wipe: ...").
*/
static int protobuf_encode(lua_State *L) {
  pb_schema *S = luaL_checkudata(L, 1, SCHEMA_MT);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  pb_enc e;
  e.root = pb_check_message(L, S);  /* [S, name, value, strings] */
  e.L = L;
  e.S = S;
  e.strings = 4;
  e.depth = 0;
  lua_pushnil(L);
  e.box = 5;
  e.data = e.init;
  e.len = 0;
  e.cap = sizeof e.init;
  enc_message(&e, e.root, 3);
  lua_pushlstring(L, e.data, e.len);
  return 1;
}

static const luaL_Reg protobuf_encode_funcs[] = {
  {"encode", protobuf_encode},
  {NULL, NULL}
};

int luaopen_tlr_protobuf_encode_core(lua_State *L) {
  luaL_newlib(L, protobuf_encode_funcs);
  return 1;
}
