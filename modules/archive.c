/*
** archive.c: gzip and tar for tlr.archive (tlr.archive.core), on zlib only.
**
** gzip/gunzip run a zwork: plain C that reads an input buffer and grows an
** output buffer, never touching Lua.  Small inputs run it right away (the
** zwork is owned by a private userdata, so a memory error raised while the
** result is pushed leaks nothing); large ones hand it to the worker pool
** with tlr_job_push and the Lua side waits with sched.await_job.
**
** untar only slices the input string: ustar, GNU long names ('L', 'K') and
** pax path/linkpath/size records, with a missing end-of-archive tolerated.
*/
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "tlr.h"

#define WORK_MT "tlr.archive.Work"
#define BLOCK 512

/* ========== gzip / gunzip ========== */

enum { ZW_GZIP, ZW_GUNZIP };

typedef struct zwork {
  int op;
  const unsigned char *in; /* the Lua string (sync) or in_copy (on a worker) */
  size_t inlen;
  unsigned char *in_copy;
  int level;
  size_t max_size;
  unsigned char *out;
  size_t outlen, outcap;
  const char *code; /* NULL on success, else an error code from tlr_err.h */
  char msg[160];
} zwork;

static void zwork_free(void *ctx) {
  zwork *w = ctx;
  if (!w) return;
  free(w->in_copy);
  free(w->out);
  free(w);
}

static void zwork_fail(zwork *w, const char *code, const char *msg, const char *detail) {
  w->code = code;
  snprintf(w->msg, sizeof w->msg, "%s%s%s", msg, detail ? ": " : "", detail ? detail : "");
}

/*
** Makes room for `want` more output bytes, growing the buffer to at most
** `limit` bytes in all.  Returns -1 when it is full at the limit or memory
** runs out (w->outcap >= limit tells which).
*/
static int zwork_grow(zwork *w, size_t want, size_t limit) {
  if (w->outcap - w->outlen >= want) return 0;
  if (w->outcap >= limit) return w->outcap > w->outlen ? 0 : -1;
  size_t cap = w->outcap ? w->outcap : 16384;
  while (cap - w->outlen < want && cap < limit) cap = cap > limit / 2 ? limit : cap * 2;
  if (cap > limit) cap = limit;
  unsigned char *p = realloc(w->out, cap);
  if (!p) return -1;
  w->out = p;
  w->outcap = cap;
  return 0;
}

static uInt zwork_chunk(size_t n) { return n > UINT_MAX ? UINT_MAX : (uInt)n; }

static void zwork_gzip(zwork *w) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (deflateInit2(&zs, w->level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    zwork_fail(w, "EIO", "gzip: cannot initialise zlib", zs.msg);
    return;
  }
  size_t used = 0;
  size_t bound = deflateBound(&zs, (uLong)w->inlen);
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zwork_grow(w, w->outlen == 0 ? bound : 65536, SIZE_MAX) != 0) {
      zwork_fail(w, "EIO", "gzip: out of memory", NULL);
      break;
    }
    zs.next_in = (Bytef *)(w->in + used);
    zs.avail_in = zwork_chunk(w->inlen - used);
    zs.next_out = w->out + w->outlen;
    zs.avail_out = zwork_chunk(w->outcap - w->outlen);
    uInt in0 = zs.avail_in, out0 = zs.avail_out;
    int flush = w->inlen - used == zs.avail_in ? Z_FINISH : Z_NO_FLUSH;
    rc = deflate(&zs, flush);
    used += in0 - zs.avail_in;
    w->outlen += out0 - zs.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      zwork_fail(w, "EIO", "gzip: compression failed", zs.msg);
      break;
    }
  }
  deflateEnd(&zs);
}

/* True when all n bytes at p are zero (padding some tools add after a member). */
static int all_zero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static void zwork_gunzip(zwork *w) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (w->inlen < 2 || w->in[0] != 0x1f || w->in[1] != 0x8b) {
    zwork_fail(w, "EINVAL", "gunzip: not gzip data (bad magic bytes)", NULL);
    return;
  }
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    zwork_fail(w, "EIO", "gunzip: cannot initialise zlib", zs.msg);
    return;
  }
  size_t used = 0;
  size_t guess = w->inlen < SIZE_MAX / 4 ? w->inlen * 4 : SIZE_MAX;
  size_t limit = w->max_size < SIZE_MAX ? w->max_size + 1 : SIZE_MAX; /* +1 detects "over" */
  if (guess > limit) guess = limit;
  for (;;) {
    if (zwork_grow(w, w->outlen == 0 ? guess : 65536, limit) != 0) {
      if (w->outcap >= limit) zwork_fail(w, "ETOOBIG", "gunzip: output exceeds max_size", NULL);
      else zwork_fail(w, "EIO", "gunzip: out of memory", NULL);
      break;
    }
    zs.next_in = (Bytef *)(w->in + used);
    zs.avail_in = zwork_chunk(w->inlen - used);
    zs.next_out = w->out + w->outlen;
    zs.avail_out = zwork_chunk(w->outcap - w->outlen);
    uInt in0 = zs.avail_in, out0 = zs.avail_out;
    int rc = inflate(&zs, Z_NO_FLUSH);
    used += in0 - zs.avail_in;
    w->outlen += out0 - zs.avail_out;
    if (w->outlen > w->max_size) {
      zwork_fail(w, "ETOOBIG", "gunzip: output exceeds max_size", NULL);
      break;
    }
    if (rc == Z_STREAM_END) { /* one member done: another may follow */
      size_t rest = w->inlen - used;
      if (rest == 0 || all_zero(w->in + used, rest)) break;
      if (rest < 2 || w->in[used] != 0x1f || w->in[used + 1] != 0x8b) {
        zwork_fail(w, "EINVAL", "gunzip: trailing garbage after the gzip data", NULL);
        break;
      }
      inflateReset(&zs);
    } else if (rc == Z_OK || rc == Z_BUF_ERROR) {
      if (used == w->inlen && zs.avail_out > 0) { /* wants more input: there is none */
        zwork_fail(w, "EINVAL", "gunzip: truncated gzip data", NULL);
        break;
      }
    } else if (rc == Z_DATA_ERROR) {
      zwork_fail(w, "EINVAL", "gunzip: corrupt gzip data", zs.msg);
      break;
    } else if (rc != Z_OK) {
      zwork_fail(w, "EIO", "gunzip: decompression failed", zs.msg);
      break;
    }
  }
  inflateEnd(&zs);
}

static void zwork_run(void *ctx) {
  zwork *w = ctx;
  if (w->op == ZW_GZIP) zwork_gzip(w);
  else zwork_gunzip(w);
}

static int zwork_push(lua_State *L, void *ctx) {
  zwork *w = ctx;
  if (w->code) return tlr_fail(L, w->code, "%s", w->msg);
  lua_pushlstring(L, w->out ? (const char *)w->out : "", w->outlen);
  return 1;
}

static const tlr_job_class zwork_class = {"gzip", zwork_run, zwork_push, zwork_free};

static int archive_work_gc(lua_State *L) {
  zwork **box = luaL_checkudata(L, 1, WORK_MT);
  zwork_free(*box);
  *box = NULL;
  return 0;
}

/*
** Runs w now (async = 0: returns the results) or on the worker pool
** (async = 1: returns a tlr.loop.Job whose result() gives them).
** The input string must be at stack index 1.
*/
static int archive_start(lua_State *L, zwork *w, int async) {
  if (async) {
    w->in_copy = malloc(w->inlen ? w->inlen : 1);
    if (!w->in_copy) {
      zwork_free(w);
      return luaL_error(L, "not enough memory");
    }
    memcpy(w->in_copy, w->in, w->inlen);
    w->in = w->in_copy; /* the worker must not read a collectable Lua string */
    tlr_job_push(L, &zwork_class, w);
    return 1;
  }
  zwork **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = w;
  luaL_setmetatable(L, WORK_MT);
  int top = lua_gettop(L);
  zwork_run(w);
  int n = zwork_push(L, w);
  lua_pushcfunction(L, archive_work_gc); /* free now rather than at the next GC */
  lua_pushvalue(L, top);
  lua_call(L, 1, 0);
  return n;
}

static zwork *archive_newwork(lua_State *L, int op) {
  zwork *w = calloc(1, sizeof *w);
  if (!w) luaL_error(L, "not enough memory");
  w->op = op;
  w->in = (const unsigned char *)lua_tolstring(L, 1, &w->inlen);
  return w;
}

/*
** gzip(data, level, async) -> string | nil, msg, code | Job
** level 0..9.  The header carries no name and mtime 0, so the output
** depends on the input and level only.
*/
static int archive_gzip(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_Integer level = luaL_checkinteger(L, 2);
  luaL_argcheck(L, level >= 0 && level <= 9, 2, "level must be 0..9");
  int async = lua_toboolean(L, 3);
  zwork *w = archive_newwork(L, ZW_GZIP);
  w->level = (int)level;
  return archive_start(L, w, async);
}

/*
** gunzip(data, max_size, async) -> string | nil, msg, code | Job
** Decodes every gzip member in turn; zero padding after the last is fine.
** Errors: EINVAL (not gzip, corrupt, truncated, trailing garbage),
** ETOOBIG (output over max_size bytes), EIO (zlib could not allocate).
*/
static int archive_gunzip(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  luaL_argcheck(L, max >= 0, 2, "max_size must be >= 0");
  int async = lua_toboolean(L, 3);
  zwork *w = archive_newwork(L, ZW_GUNZIP);
  w->max_size = (lua_Unsigned)max > SIZE_MAX ? SIZE_MAX : (size_t)max;
  return archive_start(L, w, async);
}

/* ========== untar ========== */

typedef struct span {
  const char *s;
  size_t len;
} span;

/* The text of a NUL-padded header field. */
static span tar_field(const char *f, size_t size) {
  span r = {f, 0};
  while (r.len < size && f[r.len]) r.len++;
  return r;
}

/* Parses an octal (or GNU base-256) numeric field; -1 when it is malformed. */
static long long tar_number(const char *f, size_t size) {
  const unsigned char *u = (const unsigned char *)f;
  long long v = 0;
  size_t i = 0;
  if (u[0] & 0x80) { /* base-256: big-endian, first byte's top bit is the flag */
    if (u[0] == 0xff) return -1; /* negative */
    v = u[0] & 0x7f;
    for (i = 1; i < size; i++) {
      if (v > (LLONG_MAX >> 8)) return -1;
      v = (v << 8) | u[i];
    }
    return v;
  }
  while (i < size && u[i] == ' ') i++;
  size_t start = i;
  for (; i < size && u[i] >= '0' && u[i] <= '7'; i++) {
    if (v > (LLONG_MAX >> 3)) return -1;
    v = v * 8 + (u[i] - '0');
  }
  if (i == start && i < size && u[i] != 0) return -1;
  for (; i < size; i++)
    if (u[i] != ' ' && u[i] != 0) return -1;
  return v;
}

/* True when the stored checksum matches the unsigned (or historic signed) sum. */
static int tar_checksum_ok(const unsigned char *h) {
  long long stored = tar_number((const char *)h + 148, 8);
  long usum = 0, ssum = 0;
  for (int i = 0; i < BLOCK; i++) {
    unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
    usum += c;
    ssum += (signed char)c;
  }
  return stored >= 0 && (stored == usum || stored == ssum);
}

static const char *tar_typename(char flag) {
  switch (flag) {
    case '0': case '\0': case '7': return "file";
    case '1': return "hardlink";
    case '2': return "symlink";
    case '3': return "char";
    case '4': return "block";
    case '5': return "dir";
    case '6': return "fifo";
    default: return "other";
  }
}

/* pax overrides for the next entry ("path", "linkpath", "size", "mtime"). */
typedef struct pax {
  span path, linkpath;
  long long size, mtime; /* -1 when not given */
} pax;

/* Parses "<len> key=value\n" records; returns -1 when they are malformed. */
static int tar_pax(const char *p, size_t n, pax *x) {
  size_t off = 0;
  while (off < n) {
    size_t i = off, reclen = 0;
    if (p[off] == 0) break; /* NUL padding */
    for (; i < n && p[i] >= '0' && p[i] <= '9' && reclen <= n; i++)
      reclen = reclen * 10 + (size_t)(p[i] - '0');
    if (i == off || i >= n || p[i] != ' ') return -1;
    if (reclen > n - off || reclen < i - off + 3 || p[off + reclen - 1] != '\n') return -1;
    const char *key = p + i + 1, *end = p + off + reclen - 1;
    const char *eq = memchr(key, '=', (size_t)(end - key));
    if (!eq) return -1;
    span k = {key, (size_t)(eq - key)}, v = {eq + 1, (size_t)(end - eq - 1)};
    if (k.len == 4 && memcmp(k.s, "path", 4) == 0) x->path = v;
    else if (k.len == 8 && memcmp(k.s, "linkpath", 8) == 0) x->linkpath = v;
    else if ((k.len == 4 && memcmp(k.s, "size", 4) == 0) ||
             (k.len == 5 && memcmp(k.s, "mtime", 5) == 0)) {
      long long num = 0;
      size_t j = 0;
      for (; j < v.len && v.s[j] >= '0' && v.s[j] <= '9' && num < LLONG_MAX / 10; j++)
        num = num * 10 + (v.s[j] - '0');
      if (j == 0) return -1;
      if (k.len == 4) x->size = num;
      else x->mtime = num; /* fractional seconds dropped */
    }
    off += reclen;
  }
  return 0;
}

static void tar_setint(lua_State *L, const char *key, long long v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, key);
}

/*
** untar(data) -> {{name=, type=, size=, mode=, mtime=, uid=, gid=,
**                  data= (files), linkname= (links)}, ...} | nil, msg, "EINVAL"
** Stops at the first zero block or at the end of the data (Talos omits the
** end-of-archive blocks and the last entry's padding).  A bad header
** checksum, a malformed field or an entry cut short fail.
*/
static int archive_untar(lua_State *L) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  span longname = {NULL, 0}, longlink = {NULL, 0};
  pax x = {{NULL, 0}, {NULL, 0}, -1, -1};
  size_t off = 0;
  lua_Integer count = 0;
  lua_settop(L, 1);
  lua_newtable(L); /* [data, list] */
  while (off < len) {
    const unsigned char *h = (const unsigned char *)data + off;
    if (len - off < BLOCK) {
      if (all_zero(h, len - off)) break;
      return tlr_fail(L, "EINVAL", "untar: truncated header at offset %I", (lua_Integer)off);
    }
    if (all_zero(h, BLOCK)) break; /* end of archive (one zero block is enough) */
    if (!tar_checksum_ok(h))
      return tlr_fail(L, "EINVAL", "untar: bad header checksum at offset %I", (lua_Integer)off);
    long long size = tar_number((const char *)h + 124, 12);
    long long mode = tar_number((const char *)h + 100, 8);
    long long mtime = tar_number((const char *)h + 136, 12);
    long long uid = tar_number((const char *)h + 108, 8);
    long long gid = tar_number((const char *)h + 116, 8);
    if (size < 0 || mode < 0 || mtime < 0 || uid < 0 || gid < 0)
      return tlr_fail(L, "EINVAL", "untar: malformed numeric field in the header at offset %I",
                      (lua_Integer)off);
    char flag = (char)h[156];
    if (x.size >= 0 && flag != 'x' && flag != 'g') size = x.size;
    size_t dataoff = off + BLOCK;
    span name = tar_field((const char *)h, 100);
    if ((unsigned long long)size > len - dataoff)
      return tlr_fail(L, "EINVAL", "untar: entry '%s' is truncated (%I of %I bytes)",
                      lua_pushlstring(L, name.s, name.len), (lua_Integer)(len - dataoff),
                      (lua_Integer)size);
    size_t padded = ((size_t)size + BLOCK - 1) / BLOCK * BLOCK;
    size_t next = padded > len - dataoff ? len : dataoff + padded; /* last padding may be missing */
    const char *body = data + dataoff;
    if (flag == 'L' || flag == 'K') { /* GNU: the body is the next entry's long name */
      span s = tar_field(body, (size_t)size);
      if (flag == 'L') longname = s;
      else longlink = s;
      off = next;
      continue;
    }
    if (flag == 'x' || flag == 'g') {
      if (flag == 'x' && tar_pax(body, (size_t)size, &x) != 0)
        return tlr_fail(L, "EINVAL", "untar: malformed pax header at offset %I", (lua_Integer)off);
      off = next;
      continue;
    }
    lua_createtable(L, 0, 8); /* [data, list, entry] */
    if (longname.s) lua_pushlstring(L, longname.s, longname.len);
    else if (x.path.s) lua_pushlstring(L, x.path.s, x.path.len);
    else {
      span prefix = tar_field((const char *)h + 345, 155);
      if (memcmp(h + 257, "ustar\0", 6) == 0 && prefix.len > 0) { /* POSIX, not GNU */
        lua_pushlstring(L, prefix.s, prefix.len);
        lua_pushliteral(L, "/");
        lua_pushlstring(L, name.s, name.len);
        lua_concat(L, 3);
      } else {
        lua_pushlstring(L, name.s, name.len);
      }
    }
    lua_setfield(L, -2, "name");
    lua_pushstring(L, tar_typename(flag));
    lua_setfield(L, -2, "type");
    tar_setint(L, "size", size);
    tar_setint(L, "mode", mode & 07777);
    tar_setint(L, "mtime", x.mtime >= 0 ? x.mtime : mtime);
    tar_setint(L, "uid", uid);
    tar_setint(L, "gid", gid);
    if (flag == '0' || flag == '\0' || flag == '7') {
      lua_pushlstring(L, body, (size_t)size);
      lua_setfield(L, -2, "data");
    } else if (flag == '1' || flag == '2') {
      span link = tar_field((const char *)h + 157, 100);
      if (longlink.s) link = longlink;
      else if (x.linkpath.s) link = x.linkpath;
      lua_pushlstring(L, link.s, link.len);
      lua_setfield(L, -2, "linkname");
    }
    lua_rawseti(L, 2, ++count);
    longname.s = longlink.s = NULL;
    x.path.s = x.linkpath.s = NULL;
    x.size = x.mtime = -1;
    off = next;
  }
  return 1;
}

static const luaL_Reg archive_funcs[] = {
  {"gzip", archive_gzip},
  {"gunzip", archive_gunzip},
  {"untar", archive_untar},
  {NULL, NULL},
};

static const luaL_Reg work_meta[] = {
  {"__gc", archive_work_gc},
  {NULL, NULL},
};

int luaopen_tlr_archive_core(lua_State *L) {
  tlr_newclass(L, WORK_MT, NULL, work_meta);
  luaL_newlib(L, archive_funcs);
  return 1;
}
