/*
** repl.c: line editing for `tlr repl` (tlr.repl.core), on libedit's
** readline interface.  The REPL itself (evaluation, printing, commands) is
** lua/tlr/repl.lua; this file only reads lines, keeps history and asks a
** Lua completer for candidates.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>

#include "tlr.h"

static lua_State *completion_state = NULL;
static int completer_ref = LUA_NOREF;
static volatile sig_atomic_t prompt_interrupted = 0;

/* Candidates for the word `text` at [start, end) of the line, from the Lua completer. */
static char **complete(const char *text, int start, int end) {
  (void)end;
  lua_State *L = completion_state;
  rl_attempted_completion_over = 1;  /* never fall back to file names */
  if (!L || completer_ref == LUA_NOREF) return NULL;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, completer_ref);
  lua_pushstring(L, text);
  lua_pushstring(L, rl_line_buffer);
  lua_pushinteger(L, start);
  char **matches = NULL;
  /* never let a Lua error unwind through libedit: pcall and drop it */
  if (tlr_pcall(L, 3, 1) == LUA_OK && lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    if (n > 0) {
      matches = calloc((size_t)n + 2, sizeof *matches);
      if (matches) {
        /* matches[0] is the common prefix libedit substitutes in */
        size_t common = 0;
        for (lua_Integer i = 1; i <= n; i++) {
          lua_rawgeti(L, -1, i);
          const char *s = lua_tostring(L, -1);
          matches[i] = strdup(s ? s : "");
          lua_pop(L, 1);
          if (!matches[i]) break;  /* out of memory: offer what we have */
          if (i == 1) common = strlen(matches[1]);
          else {
            size_t k = 0;
            while (k < common && matches[i][k] == matches[1][k]) k++;
            common = k;
          }
        }
        matches[0] = matches[1] ? strndup(matches[1], common) : NULL;
        if (!matches[0]) {
          for (lua_Integer i = 1; i <= n && matches[i]; i++) free(matches[i]);
          free(matches);
          matches = NULL;
        }
        if (matches && n == 1) {  /* one candidate: libedit wants just matches[0] */
          free(matches[0]);
          matches[0] = matches[1];
          matches[1] = NULL;
        }
      }
    }
  }
  lua_settop(L, top);
  return matches;
}

static void on_prompt_sigint(int sig) {
  (void)sig;
  prompt_interrupted = 1;
}

/*
** readline(prompt) -> line | nil, "interrupted" | nil (end of input)
** Ctrl-C at the prompt gives "interrupted", so the REPL can drop the line.
*/
static int repl_readline(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "> ");
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_prompt_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  prompt_interrupted = 0;
  completion_state = L;
  char *line = readline(prompt);
  completion_state = NULL;
  sigaction(SIGINT, &old, NULL);
  if (!line) {
    if (prompt_interrupted) {
      lua_pushnil(L);
      lua_pushliteral(L, "interrupted");
      return 2;
    }
    return 0;
  }
  lua_pushstring(L, line);
  free(line);
  if (prompt_interrupted) {
    lua_pushnil(L);
    lua_pushliteral(L, "interrupted");
    return 2;
  }
  return 1;
}

static int repl_add_history(lua_State *L) {
  add_history(luaL_checkstring(L, 1));
  return 0;
}

/* load_history(path): missing file is fine (first run); keeps the last 1000 lines */
static int repl_load_history(lua_State *L) {
  stifle_history(1000);
  read_history(luaL_checkstring(L, 1));
  return 0;
}

static int repl_save_history(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (write_history(path) != 0) return tlr_fail(L, "EIO", "%s: %s", path, strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* set_completer(fn): fn(word, line, start) -> list of candidates for word */
static int repl_set_completer(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (completer_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, completer_ref);
  lua_pushvalue(L, 1);
  completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rl_attempted_completion_function = complete;
  rl_completion_append_character = '\0';  /* `tlr.http` then `.request`: no space */
  /* paths like /nodes/{node}/qemu and fields like pve:get are one word */
  rl_basic_word_break_characters = " \t\n\"'(),=[]+*<>~;";
  return 0;
}

static const luaL_Reg repl_funcs[] = {
  {"add_history", repl_add_history},
  {"load_history", repl_load_history},
  {"readline", repl_readline},
  {"save_history", repl_save_history},
  {"set_completer", repl_set_completer},
  {NULL, NULL}
};

int luaopen_tlr_repl_core(lua_State *L) {
  luaL_newlib(L, repl_funcs);
  return 1;
}
