/*
** loop.c: the event loop under the Lua scheduler (tlr.loop.core).
**
** One loop per lua_State, created on first use.  It waits on curl_multi
** transfers, watched file descriptors, a self-pipe (worker completions and
** SIGINT) and a timeout, and reports the ids that became ready.  Which task
** waits on which id, timers and cancellation are the scheduler's business
** (lua/tlr/sched.lua); this file only knows ids.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#include "tlr.h"
#include "tlr_curl.h"

#define LOOP_KEY "tlr.loop"
#define JOB_MT "tlr.loop.Job"
#define WORKERS 2

enum { JOB_QUEUED, JOB_RUNNING, JOB_FINISHED, JOB_COLLECTED };

typedef struct job {
  const tlr_job_class *cls;
  void *ctx;
  lua_Integer id;
  int state;
  int abandoned;  /* its Lua handle was collected while it ran */
  struct job *next;
} job;

typedef struct watch {
  lua_Integer id;
  int fd;
  short events;
} watch;

struct tlr_loop {
  CURLM *multi;
  int ntransfers;  /* easy handles in multi now */
  lua_Integer next_id;
  /* ids notified since the last poll */
  lua_Integer *ready;
  size_t nready, capready;
  watch *watches;
  size_t nwatches, capwatches;
  int wake[2];  /* self-pipe: workers and the SIGINT handler write a byte */
  /* worker pool */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t threads[WORKERS];
  int nthreads;
  int stopping;
  job *queue_head, *queue_tail;
  job *finished;  /* done by a worker, not yet seen by the main thread */
  int closed;
};

static volatile sig_atomic_t sigint_seen = 0;
static int sigint_fd = -1;

/* ========== ids ========== */

lua_Integer tlr_loop_newid(tlr_loop *loop) { return ++loop->next_id; }

void tlr_loop_notify(tlr_loop *loop, lua_Integer id) {
  if (loop->nready == loop->capready) {
    size_t cap = loop->capready ? loop->capready * 2 : 64;
    lua_Integer *p = realloc(loop->ready, cap * sizeof *p);
    if (!p) abort();  /* out of memory in the loop itself: nothing sane to do */
    loop->ready = p;
    loop->capready = cap;
  }
  loop->ready[loop->nready++] = id;
}

static void wake_pipe(int fd) {
  char b = 1;
  ssize_t n = write(fd, &b, 1);  /* a full pipe already means "wake up" */
  (void)n;
}

/* ========== worker pool ========== */

static void *worker_main(void *arg) {
  tlr_loop *loop = arg;
  pthread_mutex_lock(&loop->mu);
  for (;;) {
    while (!loop->queue_head && !loop->stopping) pthread_cond_wait(&loop->cv, &loop->mu);
    if (loop->stopping) break;
    job *j = loop->queue_head;
    loop->queue_head = j->next;
    if (!loop->queue_head) loop->queue_tail = NULL;
    j->state = JOB_RUNNING;
    pthread_mutex_unlock(&loop->mu);
    j->cls->work(j->ctx);
    pthread_mutex_lock(&loop->mu);
    j->state = JOB_FINISHED;
    j->next = loop->finished;
    loop->finished = j;
    wake_pipe(loop->wake[1]);
  }
  pthread_mutex_unlock(&loop->mu);
  return NULL;
}

static void job_free(job *j) {
  if (j->cls->free_ctx) j->cls->free_ctx(j->ctx);
  free(j);
}

static void collect_jobs(tlr_loop *loop) {
  pthread_mutex_lock(&loop->mu);
  job *list = loop->finished;
  loop->finished = NULL;
  job *drop = NULL;
  for (job *j = list, *next; j; j = next) {
    next = j->next;
    j->state = JOB_COLLECTED;
    if (j->abandoned) {
      j->next = drop;
      drop = j;
    } else {
      tlr_loop_notify(loop, j->id);
    }
  }
  pthread_mutex_unlock(&loop->mu);
  for (job *j = drop, *next; j; j = next) {
    next = j->next;
    job_free(j);
  }
}

static job **check_job(lua_State *L) { return luaL_checkudata(L, 1, JOB_MT); }

static int job_close(lua_State *L) {
  job **box = check_job(L);
  job *j = *box;
  if (!j) return 0;
  *box = NULL;
  tlr_loop *loop = tlr_loop_get(L);
  pthread_mutex_lock(&loop->mu);
  if (j->state == JOB_QUEUED) {  /* unlink it; no worker has seen it */
    job **pp = &loop->queue_head, *prev = NULL;
    while (*pp != j) {
      prev = *pp;
      pp = &(*pp)->next;
    }
    *pp = j->next;
    if (loop->queue_tail == j) loop->queue_tail = prev;
    j->state = JOB_COLLECTED;
  }
  int owned_by_worker = j->state != JOB_COLLECTED;
  if (owned_by_worker) j->abandoned = 1;
  pthread_mutex_unlock(&loop->mu);
  if (!owned_by_worker) job_free(j);
  return 0;
}

static job *live_job(lua_State *L) {
  job *j = *check_job(L);
  if (!j) luaL_error(L, "attempt to use a closed job");
  return j;
}

static int job_id(lua_State *L) {
  lua_pushinteger(L, live_job(L)->id);
  return 1;
}

static int job_done(lua_State *L) {
  lua_pushboolean(L, live_job(L)->state == JOB_COLLECTED);
  return 1;
}

/* job:result() -> whatever the job class pushes; raises if it has not finished. */
static int job_result(lua_State *L) {
  job *j = live_job(L);
  if (j->state != JOB_COLLECTED) return luaL_error(L, "job '%s' has not finished", j->cls->name);
  return j->cls->push(L, j->ctx);
}

void tlr_job_push(lua_State *L, const tlr_job_class *cls, void *ctx) {
  tlr_loop *loop = tlr_loop_get(L);
  job **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, JOB_MT);
  job *j = calloc(1, sizeof *j);
  if (!j) {
    cls->free_ctx(ctx);
    luaL_error(L, "out of memory");
  }
  j->cls = cls;
  j->ctx = ctx;
  j->id = tlr_loop_newid(loop);
  j->state = JOB_QUEUED;
  *box = j;
  pthread_mutex_lock(&loop->mu);
  if (loop->nthreads == 0) {  /* start the pool on first use */
    for (int i = 0; i < WORKERS; i++)
      if (pthread_create(&loop->threads[i], NULL, worker_main, loop) == 0) loop->nthreads++;
  }
  if (loop->queue_tail) loop->queue_tail->next = j;
  else loop->queue_head = j;
  loop->queue_tail = j;
  pthread_cond_signal(&loop->cv);
  pthread_mutex_unlock(&loop->mu);
  if (loop->nthreads == 0) luaL_error(L, "cannot start worker threads");
}

/* ========== transfers and fds ========== */

int tlr_loop_add_transfer(tlr_loop *loop, void *easy, tlr_transfer *t) {
  t->done = 0;
  t->result = CURLE_OK;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
  if (curl_multi_add_handle(loop->multi, easy) != CURLM_OK) return -1;
  t->added = 1;
  loop->ntransfers++;
  return 0;
}

void tlr_loop_remove_transfer(tlr_loop *loop, void *easy, tlr_transfer *t) {
  if (t->added && !loop->closed) {
    curl_multi_remove_handle(loop->multi, easy);
    loop->ntransfers--;
  }
  t->added = 0;
}

void *tlr_loop_multi(tlr_loop *loop) { return loop->multi; }

static void collect_transfers(tlr_loop *loop) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(loop->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    tlr_transfer *t = NULL;
    CURLcode rc = msg->data.result;  /* read before remove: msg dies with it */
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    curl_multi_remove_handle(loop->multi, easy);
    loop->ntransfers--;
    if (!t) continue;
    t->added = 0;
    t->done = 1;
    t->result = rc;
    tlr_loop_notify(loop, t->id);
  }
}

lua_Integer tlr_loop_watch(tlr_loop *loop, int fd, short events) {
  if (loop->nwatches == loop->capwatches) {
    size_t cap = loop->capwatches ? loop->capwatches * 2 : 8;
    watch *p = realloc(loop->watches, cap * sizeof *p);
    if (!p) abort();
    loop->watches = p;
    loop->capwatches = cap;
  }
  watch *w = &loop->watches[loop->nwatches++];
  w->id = tlr_loop_newid(loop);
  w->fd = fd;
  w->events = events;
  return w->id;
}

void tlr_loop_unwatch(tlr_loop *loop, lua_Integer id) {
  for (size_t i = 0; i < loop->nwatches; i++) {
    if (loop->watches[i].id == id) {
      loop->watches[i] = loop->watches[--loop->nwatches];
      return;
    }
  }
}

/* ========== the loop object ========== */

static int loop_gc(lua_State *L) {
  tlr_loop *loop = lua_touserdata(L, 1);
  if (loop->closed) return 0;
  loop->closed = 1;
  pthread_mutex_lock(&loop->mu);
  loop->stopping = 1;
  pthread_cond_broadcast(&loop->cv);
  pthread_mutex_unlock(&loop->mu);
  for (int i = 0; i < loop->nthreads; i++) pthread_join(loop->threads[i], NULL);
  for (job *j = loop->finished, *next; j; j = next) {
    next = j->next;
    if (j->abandoned) job_free(j);
  }
  /* jobs still queued are owned by their (unreachable) handles' finalizers */
  curl_multi_cleanup(loop->multi);
  if (sigint_fd == loop->wake[1]) sigint_fd = -1;
  close(loop->wake[0]);
  close(loop->wake[1]);
  free(loop->ready);
  free(loop->watches);
  pthread_mutex_destroy(&loop->mu);
  pthread_cond_destroy(&loop->cv);
  return 0;
}

tlr_loop *tlr_loop_get(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, LOOP_KEY) == LUA_TUSERDATA) {
    tlr_loop *loop = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return loop;
  }
  lua_pop(L, 1);
  static int curl_ready = 0;
  if (!curl_ready) {  /* here, not at start-up: `tlr -e ''` never pays for it */
    const char *why = tlr_curl_load();
    if (why) luaL_error(L, "%s", why);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) luaL_error(L, "curl_global_init failed");
    curl_ready = 1;
  }
  tlr_loop *loop = lua_newuserdatauv(L, sizeof *loop, 0);
  memset(loop, 0, sizeof *loop);
  loop->closed = 1;  /* until fully set up, so __gc is safe */
  lua_newtable(L);
  lua_pushcfunction(L, loop_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  if (pipe(loop->wake) != 0) luaL_error(L, "pipe: %s", strerror(errno));
  for (int i = 0; i < 2; i++) {
    fcntl(loop->wake[i], F_SETFL, O_NONBLOCK);
    fcntl(loop->wake[i], F_SETFD, FD_CLOEXEC);
  }
  pthread_mutex_init(&loop->mu, NULL);
  pthread_cond_init(&loop->cv, NULL);
  loop->multi = curl_multi_init();
  if (!loop->multi) luaL_error(L, "curl_multi_init failed");
  curl_multi_setopt(loop->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  loop->closed = 0;
  lua_setfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
  return loop;
}

/* ========== Lua API ========== */

static void drain_wake(tlr_loop *loop) {
  char buf[64];
  while (read(loop->wake[0], buf, sizeof buf) > 0) {}
}

/*
** poll([timeout_seconds]) -> ids, interrupted
** Drives transfers and waits at most timeout (nil = until something
** happens) for any id to become ready.  Returns at once when ids are ready.
*/
static int loop_poll(lua_State *L) {
  double timeout = luaL_optnumber(L, 1, -1);
  tlr_loop *loop = tlr_loop_get(L);
  int running;
  curl_multi_perform(loop->multi, &running);
  collect_transfers(loop);
  collect_jobs(loop);
  int wait_ms;
  if (loop->nready > 0 || sigint_seen) wait_ms = 0;
  else if (timeout < 0) wait_ms = 3600 * 1000;  /* the scheduler calls again */
  else wait_ms = timeout * 1000 + 0.999;  /* round up: never wake early */
  struct curl_waitfd stackfds[16], *fds = stackfds;
  size_t nfds = 1 + loop->nwatches;
  if (nfds > 16) {
    fds = malloc(nfds * sizeof *fds);
    if (!fds) return luaL_error(L, "out of memory");
  }
  fds[0] = (struct curl_waitfd){.fd = loop->wake[0], .events = CURL_WAIT_POLLIN};
  for (size_t i = 0; i < loop->nwatches; i++) {
    short ev = 0;
    if (loop->watches[i].events & POLLIN) ev |= CURL_WAIT_POLLIN;
    if (loop->watches[i].events & POLLOUT) ev |= CURL_WAIT_POLLOUT;
    fds[i + 1] = (struct curl_waitfd){.fd = loop->watches[i].fd, .events = ev};
  }
  curl_multi_poll(loop->multi, fds, (unsigned)nfds, wait_ms, NULL);
  if (fds[0].revents) drain_wake(loop);
  size_t nwatches = loop->nwatches;  /* ids in order; notify cannot add watches */
  for (size_t i = 0; i < nwatches; i++)
    if (fds[i + 1].revents) tlr_loop_notify(loop, loop->watches[i].id);
  if (fds != stackfds) free(fds);
  curl_multi_perform(loop->multi, &running);
  collect_transfers(loop);
  collect_jobs(loop);
  lua_createtable(L, (int)loop->nready, 0);
  for (size_t i = 0; i < loop->nready; i++) {
    lua_pushinteger(L, loop->ready[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  loop->nready = 0;
  lua_pushboolean(L, sigint_seen);
  sigint_seen = 0;
  return 2;
}

static int loop_newid(lua_State *L) {
  lua_pushinteger(L, tlr_loop_newid(tlr_loop_get(L)));
  return 1;
}

/* notify(id): makes id ready at the next poll (used by Lua-side waits). */
static int loop_notify(lua_State *L) {
  tlr_loop_notify(tlr_loop_get(L), luaL_checkinteger(L, 1));
  return 0;
}

/* now() -> seconds on the monotonic clock, as a float */
static int loop_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
  return 1;
}

static void on_sigint(int sig) {
  (void)sig;
  sigint_seen = 1;
  if (sigint_fd >= 0) wake_pipe(sigint_fd);
}

/*
** catch_sigint(on): while on, SIGINT sets a flag that the next poll returns
** (so the scheduler can cancel the running call) instead of killing tlr.
*/
static int loop_catch_sigint(lua_State *L) {
  int on = lua_toboolean(L, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  if (on) {
    sigint_fd = tlr_loop_get(L)->wake[1];
    sa.sa_handler = on_sigint;
  } else {
    sa.sa_handler = SIG_DFL;
  }
  sigaction(SIGINT, &sa, NULL);
  sigint_seen = 0;
  return 0;
}

/* interrupted() -> true once per SIGINT caught since the last poll or call */
static int loop_interrupted(lua_State *L) {
  lua_pushboolean(L, sigint_seen);
  sigint_seen = 0;
  return 1;
}

/* pending() -> number of transfers, watches and jobs the loop still has */
static int loop_pending(lua_State *L) {
  tlr_loop *loop = tlr_loop_get(L);
  lua_pushinteger(L, loop->ntransfers + (lua_Integer)loop->nwatches);
  return 1;
}

static const luaL_Reg job_methods[] = {
  {"close", job_close},
  {"done", job_done},
  {"id", job_id},
  {"result", job_result},
  {NULL, NULL}
};

static const luaL_Reg job_meta[] = {
  {"__gc", job_close},
  {"__close", job_close},
  {NULL, NULL}
};

static const luaL_Reg loop_funcs[] = {
  {"catch_sigint", loop_catch_sigint},
  {"interrupted", loop_interrupted},
  {"newid", loop_newid},
  {"notify", loop_notify},
  {"now", loop_now},
  {"pending", loop_pending},
  {"poll", loop_poll},
  {NULL, NULL}
};

int luaopen_tlr_loop_core(lua_State *L) {
  tlr_newclass(L, JOB_MT, job_methods, job_meta);
  luaL_newlib(L, loop_funcs);
  return 1;
}
