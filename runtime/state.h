/* state.h: lua_State construction (state.c), private to runtime/. */
#ifndef TLR_STATE_H
#define TLR_STATE_H

#include <lua.h>

/* A new state with every library preloaded; dir (or $TLR_LUA_PATH) is searched first. */
lua_State *tlr_state_new(const char *lua_dir);

#endif
