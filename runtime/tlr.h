/*
** tlr.h: the one public header of the tlr host.
**
** Native modules include this and nothing else from runtime/. It holds the
** error-tier helpers (tlr_fail), option checking, the pcall-with-traceback
** used whenever C calls into Lua, and the event loop's C API through which
** modules hand work to the scheduler (curl transfers, worker-pool jobs, fds).
*/
#ifndef TLR_H
#define TLR_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define TLR_VERSION "0.1.0"

/* ========== errors ========== */

/*
** Runtime failure, tier (b): pushes nil, "<formatted msg>", code and
** returns 3, so a C function can `return tlr_fail(L, "ETIMEDOUT", ...)`.
** `code` must be one of the strings in runtime/tlr_err.h.
*/
int tlr_fail(lua_State *L, const char *code, const char *fmt, ...);

/* Calls the function below nargs like lua_pcall, with a traceback handler. */
int tlr_pcall(lua_State *L, int nargs, int nresults);

/* ========== options ========== */

/*
** Raises "unknown option 'x'" when the table at idx has a key that is not
** in `allowed` (NULL-terminated). idx may be absent/nil (no options).
*/
void tlr_checkopts(lua_State *L, int idx, const char *const allowed[]);

/* Typed readers of opts[key]; raise on a wrong type, return def when absent. */
const char *tlr_optstring(lua_State *L, int idx, const char *key, const char *def,
                          size_t *len);
lua_Integer tlr_optinteger(lua_State *L, int idx, const char *key, lua_Integer def);
lua_Number tlr_optnumber(lua_State *L, int idx, const char *key, lua_Number def);
int tlr_optboolean(lua_State *L, int idx, const char *key, int def);

/* Registers a metatable `name` with __index = methods, plus the metamethods. */
void tlr_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                  const luaL_Reg *meta);

/* ========== event loop ========== */

/*
** The loop notifies *ids*: each pending operation gets a fresh integer id
** from tlr_loop_newid, and the Lua scheduler wakes the task waiting on that
** id when the loop reports it.  Everything here runs on the main thread
** except a job's `work` function.
*/
typedef struct tlr_loop tlr_loop;

tlr_loop *tlr_loop_get(lua_State *L);
lua_Integer tlr_loop_newid(tlr_loop *loop);
void tlr_loop_notify(tlr_loop *loop, lua_Integer id);

/*
** curl transfers.  A module keeps a tlr_transfer as the CURLOPT_PRIVATE of
** its easy handle and adds the handle with tlr_loop_add_transfer; when the
** transfer ends, the loop removes it from the multi handle, records the
** result in `result`, sets `done` and notifies `id`.  A transfer may also
** call tlr_loop_notify(id) itself (streamed data arrived).
*/
typedef struct tlr_transfer {
  lua_Integer id;
  int added;  /* in the multi handle now */
  int done;
  int result; /* CURLcode */
} tlr_transfer;

int tlr_loop_add_transfer(tlr_loop *loop, void *easy, tlr_transfer *t);
void tlr_loop_remove_transfer(tlr_loop *loop, void *easy, tlr_transfer *t);
void *tlr_loop_multi(tlr_loop *loop); /* the CURLM *, for share settings */

/*
** Worker-pool jobs for CPU-heavy native work (RSA keygen, gzip).  `work`
** runs on a worker thread and must not touch Lua.  `push` runs on the main
** thread when the job's result is taken and pushes its results (returns
** their count).  `free_ctx` releases ctx; the loop calls it exactly once,
** also when the job is abandoned (its Lua handle collected) mid-run.
*/
typedef struct tlr_job_class {
  const char *name;
  void (*work)(void *ctx);
  int (*push)(lua_State *L, void *ctx);
  void (*free_ctx)(void *ctx);
} tlr_job_class;

/* Pushes a tlr.loop.Job userdata (fields: id; method: result) and queues it. */
void tlr_job_push(lua_State *L, const tlr_job_class *cls, void *ctx);

/*
** File-descriptor readiness (for DNS over UDP/TCP).  The id is notified
** every time fd becomes ready for `events` (POLLIN/POLLOUT), until unwatched.
*/
lua_Integer tlr_loop_watch(tlr_loop *loop, int fd, short events);
void tlr_loop_unwatch(tlr_loop *loop, lua_Integer id);

#endif
