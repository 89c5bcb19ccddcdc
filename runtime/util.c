/*
** util.c: helpers every native module uses (tlr.h): failure returns,
** pcall with traceback, option tables, class registration.
*/
#include <stdarg.h>
#include <string.h>

#include "tlr.h"

static const char *const err_codes[] = {
#define TLR_ERR(code, text) #code,
#include "tlr_err.h"
#undef TLR_ERR
  NULL
};

static int is_known_code(const char *code) {
  for (int i = 0; err_codes[i]; i++)
    if (strcmp(err_codes[i], code) == 0) return 1;
  return 0;
}

int tlr_fail(lua_State *L, const char *code, const char *fmt, ...) {
  va_list ap;
  if (!is_known_code(code))  /* a typo in a module is a programmer error */
    return luaL_error(L, "tlr_fail: unregistered error code '%s'", code);
  luaL_pushfail(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushstring(L, code);
  return 3;
}

static int traceback_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL && !lua_isnoneornil(L, 1))
    return 1;  /* a non-string error object: keep it as it is */
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int tlr_pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs;  /* function index */
  lua_pushcfunction(L, traceback_handler);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

void tlr_checkopts(lua_State *L, int idx, const char *const allowed[]) {
  if (lua_isnoneornil(L, idx)) return;
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);  /* [key] */
    int ok = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (int i = 0; allowed[i] && !ok; i++) ok = strcmp(allowed[i], k) == 0;
    }
    if (!ok) {
      lua_pushfstring(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL));
      luaL_argerror(L, idx, lua_tostring(L, -1));
    }
  }
}

/* Pushes opts[key] (or nil when opts is absent) and returns its type. */
static int opt_field(lua_State *L, int idx, const char *key) {
  if (lua_isnoneornil(L, idx)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, idx, key);
}

static void opt_typeerror(lua_State *L, int idx, const char *key, const char *want) {
  const char *got = luaL_typename(L, -1);
  luaL_argerror(L, idx, lua_pushfstring(L, "option '%s': %s expected, got %s", key, want, got));
}

const char *tlr_optstring(lua_State *L, int idx, const char *key, const char *def,
                          size_t *len) {
  idx = lua_absindex(L, idx);
  int t = opt_field(L, idx, key);
  const char *s = def;
  if (len) *len = def ? strlen(def) : 0;
  if (t == LUA_TSTRING) s = lua_tolstring(L, -1, len);
  else if (t != LUA_TNIL) opt_typeerror(L, idx, key, "string");
  lua_pop(L, 1);  /* the string stays alive: it is still referenced by opts */
  return s;
}

lua_Integer tlr_optinteger(lua_State *L, int idx, const char *key, lua_Integer def) {
  idx = lua_absindex(L, idx);
  int t = opt_field(L, idx, key);
  lua_Integer v = def;
  int isint = 0;
  if (t != LUA_TNIL) {
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || t != LUA_TNUMBER) opt_typeerror(L, idx, key, "integer");
  }
  lua_pop(L, 1);
  return v;
}

lua_Number tlr_optnumber(lua_State *L, int idx, const char *key, lua_Number def) {
  idx = lua_absindex(L, idx);
  int t = opt_field(L, idx, key);
  lua_Number v = def;
  if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (t != LUA_TNIL) opt_typeerror(L, idx, key, "number");
  lua_pop(L, 1);
  return v;
}

int tlr_optboolean(lua_State *L, int idx, const char *key, int def) {
  idx = lua_absindex(L, idx);
  int t = opt_field(L, idx, key);
  int v = def;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL) opt_typeerror(L, idx, key, "boolean");
  lua_pop(L, 1);
  return v;
}

void tlr_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                  const luaL_Reg *meta) {
  if (!luaL_newmetatable(L, name)) {  /* [mt] */
    lua_pop(L, 1);
    return;  /* registered already (module required twice) */
  }
  if (meta) luaL_setfuncs(L, meta, 0);
  if (methods) {
    lua_newtable(L);  /* methods is a pointer, so no luaL_newlib */
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
