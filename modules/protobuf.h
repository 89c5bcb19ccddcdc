/*
** protobuf.h: private to modules/protobuf.c (compiling, decoding) and
** modules/protobuf_encode.c (encoding), not part of the host API: the
** compiled schema's layout.  Everything here is static, so each native
** still exports only its luaopen symbol.
*/
#ifndef TLR_PROTOBUF_H
#define TLR_PROTOBUF_H

#include <stdint.h>
#include <string.h>

#include "tlr.h"

#define SCHEMA_MT "tlr.protobuf.Schema"
#define MAX_DEPTH 100               /* nesting limit, both directions */
#define MAX_LEN 0x7fffffffu         /* protobuf's 2 GiB message limit */

enum {
  T_DOUBLE, T_FLOAT, T_INT32, T_INT64, T_UINT32, T_UINT64, T_SINT32, T_SINT64,
  T_FIXED32, T_FIXED64, T_SFIXED32, T_SFIXED64, T_BOOL, T_STRING, T_BYTES,
  T_ENUM, T_MESSAGE
};

static const char *const pb_type_names[] = {
  "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
  "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
  "enum", "message", NULL
};

/* wire type of each type: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit */
static const unsigned char pb_type_wire[] = {1, 5, 0, 0, 0, 0, 0, 0, 5, 1, 5, 1, 0, 2, 2, 0, 2};

enum { L_SINGLE, L_REPEATED, L_MAP };
static const char *const pb_label_names[] = {"single", "repeated", "map", NULL};

typedef struct pb_field {
  const char *name;
  int name_idx;          /* the name as a Lua string: strings[name_idx] */
  uint32_t number;
  unsigned char type, label, key_type, presence, packed;
  int ref;               /* message or enum index of type (the value for maps) */
} pb_field;

typedef struct pb_message {
  const char *name;
  int nfields;
  pb_field *fields;      /* ascending by number */
} pb_message;

typedef struct pb_value {
  const char *name;
  int name_idx;          /* strings[name_idx] */
  int32_t number;
  int order;             /* declaration order, for aliases */
} pb_value;

typedef struct pb_enum {
  const char *name;
  int nnumbers, nnames;
  pb_value *by_number;   /* one per number (the first alias), ascending */
  pb_value *by_name;     /* every name, in strcmp order */
  const pb_value *zero;  /* the value numbered 0, or NULL */
} pb_enum;

typedef struct pb_schema {
  int nmessages, nenums;
  pb_message *messages;
  pb_enum *enums;
} pb_schema;

/* Pushes the strings table and returns the message named by argument 2 of a method call. */
static inline const pb_message *pb_check_message(lua_State *L, pb_schema *S) {
  const char *name = luaL_checkstring(L, 2);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  int ok = 0;
  lua_Integer i = lua_tointegerx(L, -1, &ok);
  if (!ok) luaL_error(L, "unknown message type '%s'", name);
  lua_pop(L, 2);
  lua_getiuservalue(L, 1, 3);
  return &S->messages[i];
}

static inline const pb_value *pb_enum_find_number(const pb_enum *en, int32_t n) {
  int lo = 0, hi = en->nnumbers - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (en->by_number[mid].number == n) return &en->by_number[mid];
    if (en->by_number[mid].number < n) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

static inline const pb_value *pb_enum_find_name(const pb_enum *en, const char *s) {
  int lo = 0, hi = en->nnames - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2, c = strcmp(s, en->by_name[mid].name);
    if (c == 0) return &en->by_name[mid];
    if (c > 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

#endif
