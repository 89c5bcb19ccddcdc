/*
** state.c: builds the lua_State: standard libraries, the native modules in
** package.preload, and a searcher that finds lua/ and recipes/ files either
** on disk (--lua-dir / TLR_LUA_PATH, for development) or embedded in the
** binary.  Also tlr.host.core: facts about the host for the Lua side.
*/
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <yaml.h>
#include <zlib.h>

#include "state.h"
#include "tlr.h"
#include "tlr_curl.h"

/* build/gen/embedded.c */
typedef struct embedded_file {
  const char *path;
  const unsigned char *data;
  size_t len;
} embedded_file;
extern const embedded_file tlr_embedded_files[];
extern const size_t tlr_embedded_count;

/* build/gen/preload.c */
extern const luaL_Reg tlr_preload[];

static char *lua_dir = NULL;

static const embedded_file *embedded_find(const char *path) {
  size_t lo = 0, hi = tlr_embedded_count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(tlr_embedded_files[mid].path, path);
    if (c == 0) return &tlr_embedded_files[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

/*
** The package searcher for tlr's own Lua: "tlr.http" is looked up as
** <lua-dir>/tlr/http.lua and .../tlr/http/init.lua on disk when a lua dir is
** set, then as lua/tlr/http.lua and lua/tlr/http/init.lua in the binary.
*/
static int searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *rel = luaL_gsub(L, name, ".", "/");  /* [name, rel] */
  static const char *const forms[] = {"%s/%s.lua", "%s/%s/init.lua"};
  for (int i = 0; i < 2 && lua_dir; i++) {
    const char *path = lua_pushfstring(L, forms[i], lua_dir, rel);
    if (access(path, R_OK) == 0) {
      if (luaL_loadfile(L, path) != LUA_OK)
        return luaL_error(L, "error loading module '%s' from '%s':\n\t%s", name, path,
                          lua_tostring(L, -1));
      lua_pushstring(L, path);
      return 2;
    }
    lua_pop(L, 1);
  }
  for (int i = 0; i < 2; i++) {
    const char *path = lua_pushfstring(L, forms[i], "lua", rel);
    const embedded_file *f = embedded_find(path);
    if (f) {
      const char *chunk = lua_pushfstring(L, "@%s", path);
      if (luaL_loadbufferx(L, (const char *)f->data, f->len, chunk, "b") != LUA_OK)
        return luaL_error(L, "error loading embedded module '%s':\n\t%s", name, lua_tostring(L, -1));
      lua_pushstring(L, path);
      return 2;
    }
    lua_pop(L, 1);
  }
  lua_pushfstring(L, "no embedded file 'lua/%s.lua'", rel);
  return 1;
}

/* ========== tlr.host.core ========== */

static int host_error_codes(lua_State *L) {
  lua_newtable(L);
#define TLR_ERR(code, text) \
  lua_pushstring(L, text);  \
  lua_setfield(L, -2, #code);
#include "tlr_err.h"
#undef TLR_ERR
  return 1;
}

static int host_versions(lua_State *L) {
  const char *why = tlr_curl_load();
  curl_version_info_data *cv = why ? NULL : curl_version_info(CURLVERSION_NOW);
  lua_newtable(L);
  lua_pushstring(L, TLR_VERSION);
  lua_setfield(L, -2, "tlr");
  lua_pushstring(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua");
  lua_pushstring(L, cv ? cv->version : why);
  lua_setfield(L, -2, "curl");
  lua_pushstring(L, cv && cv->nghttp2_version ? cv->nghttp2_version : "none");
  lua_setfield(L, -2, "nghttp2");
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "openssl");
  lua_pushstring(L, yaml_get_version_string());
  lua_setfield(L, -2, "libyaml");
  lua_pushstring(L, zlibVersion());
  lua_setfield(L, -2, "zlib");
  return 1;
}

static int host_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static int host_term_width(lua_State *L) {
  struct winsize ws;
  if (ioctl((int)luaL_optinteger(L, 1, 2), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    lua_pushinteger(L, ws.ws_col);
  else
    lua_pushinteger(L, 80);
  return 1;
}

/* embedded(path) -> bytecode or nil: files built into the binary (lua/, recipes/) */
static int host_embedded(lua_State *L) {
  const embedded_file *f = embedded_find(luaL_checkstring(L, 1));
  if (!f) return 0;
  lua_pushlstring(L, (const char *)f->data, f->len);
  return 1;
}

static int host_embedded_list(lua_State *L) {
  lua_createtable(L, (int)tlr_embedded_count, 0);
  for (size_t i = 0; i < tlr_embedded_count; i++) {
    lua_pushstring(L, tlr_embedded_files[i].path);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int host_lua_dir(lua_State *L) {
  if (!lua_dir) return 0;
  lua_pushstring(L, lua_dir);
  return 1;
}

static const luaL_Reg host_funcs[] = {
  {"embedded", host_embedded},
  {"embedded_list", host_embedded_list},
  {"error_codes", host_error_codes},
  {"isatty", host_isatty},
  {"lua_dir", host_lua_dir},
  {"term_width", host_term_width},
  {"versions", host_versions},
  {NULL, NULL}
};

static int luaopen_tlr_host_core(lua_State *L) {
  luaL_newlib(L, host_funcs);
  return 1;
}

/* ========== state ========== */

static void preload(lua_State *L, const char *name, lua_CFunction open) {
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
}

lua_State *tlr_state_new(const char *dir) {
  free(lua_dir);
  lua_dir = NULL;
  if (!dir) dir = getenv("TLR_LUA_PATH");
  if (dir && *dir) lua_dir = strdup(dir);
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);  /* [preload] */
  for (const luaL_Reg *r = tlr_preload; r->name; r++) preload(L, r->name, r->func);
  preload(L, "tlr.host.core", luaopen_tlr_host_core);
  lua_pop(L, 1);
  /* our searcher goes right after preload, before package.path */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");  /* [package, searchers] */
  for (lua_Integer i = luaL_len(L, -1); i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, searcher);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
  return L;
}
