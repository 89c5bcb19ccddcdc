/*
** main.c: the tlr executable.  It builds the Lua state and hands the
** command line to lua/tlr/cli.lua, which owns commands, help and exit codes.
** Only --lua-dir is read here, because it decides where cli.lua comes from.
*/
#include <stdio.h>
#include <string.h>

#include "state.h"
#include "tlr.h"

int main(int argc, char **argv) {
  const char *lua_dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0 || argv[i][0] != '-') break;
    if (strcmp(argv[i], "--lua-dir") == 0 && i + 1 < argc) lua_dir = argv[i + 1];
    else if (strncmp(argv[i], "--lua-dir=", 10) == 0) lua_dir = argv[i] + 10;
  }
  lua_State *L = tlr_state_new(lua_dir);
  if (!L) {
    fputs("tlr: cannot create the Lua state (out of memory)\n", stderr);
    return 1;
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "tlr.cli");
  int status = tlr_pcall(L, 1, 1);
  if (status == LUA_OK) {
    lua_getfield(L, -1, "main");  /* [cli, main] */
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    status = tlr_pcall(L, 1, 1);
  }
  int code = 1;
  if (status != LUA_OK) {  /* cli.main catches everything; this is a bug in it */
    fprintf(stderr, "tlr: internal error: %s\n", luaL_tolstring(L, -1, NULL));
  } else {
    code = (int)luaL_optinteger(L, -1, 0);
  }
  lua_close(L);
  return code;
}
