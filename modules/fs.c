/*
** fs.c: POSIX file operations for tlr.fs (tlr.fs.core).
**
** Reads, atomic writes with an exact mode, mkdir -p, stat, listing,
** recursive removal, the permission check for secrets files and the
** per-cluster lock file.  Every file descriptor or DIR* is kept in a guard
** userdata (tlr.fs.Guard) from the moment it is opened, so a memory error
** raised while results are pushed cannot leak it; failures close it and
** return nil, msg, code before anything else happens.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tlr.h"

#define GUARD_MT "tlr.fs.Guard"
#define LOCK_MT "tlr.fs.Lock"

/* ========== errors and guards ========== */

static const char *fs_code(int err) {
  switch (err) {
    case ENOENT: case ENOTDIR: return "ENOENT";
    case EACCES: case EPERM: case EROFS: return "EPERM";
    case EEXIST: return "EEXIST";
    default: return "EIO";
  }
}

/* return fs_fail(L, "open", path, errno): nil, "open <path>: <strerror>", code */
static int fs_fail(lua_State *L, const char *op, const char *path, int err) {
  return tlr_fail(L, fs_code(err), "%s %s: %s", op, path, strerror(err));
}

typedef struct fs_guard {
  int fd;
  DIR *dir;
} fs_guard;

static int fs_guard_close(lua_State *L) {
  fs_guard *g = luaL_checkudata(L, 1, GUARD_MT);
  if (g->fd >= 0) close(g->fd);
  if (g->dir) closedir(g->dir);
  g->fd = -1;
  g->dir = NULL;
  return 0;
}

/* Pushes an empty guard; the caller stores its fd or DIR* right after opening. */
static fs_guard *fs_newguard(lua_State *L) {
  fs_guard *g = lua_newuserdatauv(L, sizeof *g, 0);
  g->fd = -1;
  g->dir = NULL;
  luaL_setmetatable(L, GUARD_MT);
  return g;
}

/* Closes the guard's fd now; returns close's errno (0 when it went fine). */
static int fs_guard_release(fs_guard *g) {
  int rc = 0;
  if (g->fd >= 0 && close(g->fd) != 0) rc = errno;
  g->fd = -1;
  return rc;
}

static int fs_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* ========== reading and writing ========== */

/*
** read(path) -> string | nil, msg, code
** ENOENT (missing), EPERM (access denied), EIO (a directory, I/O error).
*/
static int fs_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fs_guard *g = fs_newguard(L);
  struct stat st;
  luaL_Buffer b;
  g->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (g->fd < 0) return fs_fail(L, "open", path, errno);
  int err = fstat(g->fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (err) {
    fs_guard_release(g);
    return fs_fail(L, "read", path, err);
  }
  /* the whole file in one read when its size is known (+1 to see the end) */
  size_t chunk = st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffsize(&b, chunk);
    ssize_t n = read(g->fd, p, chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      fs_guard_release(g);
      return fs_fail(L, "read", path, err);
    }
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
    chunk = 65536;
  }
  fs_guard_release(g);
  luaL_pushresult(&b);
  return 1;
}

/* Writes data to fd, applies mode exactly (umask aside), fsyncs; returns errno or 0. */
static int fs_fill(int fd, const char *data, size_t len, mode_t mode) {
  if (fchmod(fd, mode) != 0) return errno;
  if (fs_write_all(fd, data, len) != 0) return errno;
  if (fsync(fd) != 0) return errno;
  return 0;
}

/* fsyncs the directory holding a renamed file, so the rename survives a crash. */
static int fs_syncdir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = fsync(fd) != 0 && errno != EINVAL ? errno : 0; /* some fs cannot sync dirs */
  close(fd);
  return rc;
}

/*
** write(path, data, mode, atomic) -> true | nil, msg, code
** atomic: write "<dir>/.<name>.tmp-<pid>-<n>", fsync, rename over path,
** fsync the directory; the temp file is removed on any failure.
*/
static int fs_write(lua_State *L) {
  size_t plen, len;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = luaL_checklstring(L, 2, &len);
  lua_Integer mode = luaL_checkinteger(L, 3);
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 3, "mode must be 0..07777");
  int atomic = lua_toboolean(L, 4);
  lua_settop(L, 4);
  if (!atomic) {
    fs_guard *g = fs_newguard(L);
    g->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (g->fd < 0) return fs_fail(L, "open", path, errno);
    int err = fs_fill(g->fd, data, len, (mode_t)mode);
    int cerr = fs_guard_release(g);
    if (err || cerr) return fs_fail(L, "write", path, err ? err : cerr);
    lua_pushboolean(L, 1);
    return 1;
  }
  const char *slash = strrchr(path, '/');
  if (slash == path + plen - 1) return fs_fail(L, "write", path, EISDIR);
  if (slash) lua_pushlstring(L, path, slash == path ? 1 : (size_t)(slash - path)); /* [.. dir] */
  else lua_pushliteral(L, ".");
  const char *dir = lua_tostring(L, 5);
  const char *base = slash ? slash + 1 : path;
  static unsigned counter = 0;
  fs_guard *g = fs_newguard(L); /* [.. dir guard] */
  const char *tmp = NULL;
  for (int tries = 0; tries < 100 && g->fd < 0; tries++) {
    lua_settop(L, 6);
    int n = (int)(++counter % 1000000);
    tmp = lua_pushfstring(L, "%s/.%s.tmp-%d-%d", dir, base, (int)getpid(), n);
    g->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (g->fd < 0 && errno != EEXIST) return fs_fail(L, "write", path, errno);
  }
  if (g->fd < 0) return fs_fail(L, "create", tmp, EEXIST);
  int err = fs_fill(g->fd, data, len, (mode_t)mode);
  int cerr = fs_guard_release(g);
  if (!err && cerr) err = cerr;
  if (err) {
    unlink(tmp);
    return fs_fail(L, "write", tmp, err);
  }
  if (rename(tmp, path) != 0) {
    err = errno;
    unlink(tmp);
    return fs_fail(L, "rename", path, err);
  }
  err = fs_syncdir(dir);
  if (err) return fs_fail(L, "fsync", dir, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ========== directories ========== */

/*
** mkdir(path, mode) -> true | nil, msg, code
** Creates path and any missing parents (mkdir -p); directories it creates
** get exactly `mode`.  An existing directory is fine; an existing file is
** EEXIST.
*/
static int fs_mkdir(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  lua_Integer mode = luaL_checkinteger(L, 2);
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "mode must be 0..07777");
  char *buf = lua_newuserdatauv(L, len + 1, 0); /* a writable copy, collected by Lua */
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (i < len && buf[i] != '/') continue;
    if (buf[i - 1] == '/') continue; /* "a//b" or a trailing slash */
    char saved = buf[i];
    buf[i] = 0;
    struct stat st;
    if (mkdir(buf, (mode_t)mode) == 0) {
      if (chmod(buf, (mode_t)mode) != 0) return fs_fail(L, "chmod", buf, errno);
    } else if (errno != EEXIST) {
      return fs_fail(L, "mkdir", buf, errno);
    } else if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
      return tlr_fail(L, "EEXIST", "mkdir %s: exists and is not a directory", buf);
    }
    buf[i] = saved;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*
** list(path) -> {name, ...} | nil, msg, code
** The entries of a directory without "." and "..", in readdir order.
*/
static int fs_list(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  fs_guard *g = fs_newguard(L);
  lua_newtable(L); /* [path, guard, list] */
  g->dir = opendir(path);
  if (!g->dir) return fs_fail(L, "opendir", path, errno);
  lua_Integer n = 0;
  struct dirent *de;
  errno = 0;
  while ((de = readdir(g->dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, 3, ++n);
    errno = 0;
  }
  int err = errno;
  closedir(g->dir);
  g->dir = NULL;
  if (err) return fs_fail(L, "readdir", path, err);
  return 1;
}

static int remove_errno = 0;
static char remove_path[PATH_MAX];

static int fs_remove_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  (void)flag;
  if (remove(p) == 0 || errno == ENOENT) return 0;
  remove_errno = errno;
  snprintf(remove_path, sizeof remove_path, "%s", p);
  return 1; /* stops the walk */
}

/*
** remove(path, recursive) -> true | nil, msg, code
** Removes a file, a symlink (never its target) or an empty directory;
** recursive removes a whole tree.  A missing path is ENOENT.
*/
static int fs_remove(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int recursive = lua_toboolean(L, 2);
  struct stat st;
  if (lstat(path, &st) != 0) return fs_fail(L, "remove", path, errno);
  if (recursive && S_ISDIR(st.st_mode)) {
    remove_errno = 0;
    int rc = nftw(path, fs_remove_one, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != 0) {
      int err = remove_errno ? remove_errno : errno;
      return fs_fail(L, "remove", remove_errno ? remove_path : path, err);
    }
  } else if (remove(path) != 0) {
    return fs_fail(L, "remove", path, errno);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ========== metadata ========== */

static const char *fs_typename(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "dir";
  if (S_ISLNK(m)) return "symlink";
  if (S_ISCHR(m)) return "char";
  if (S_ISBLK(m)) return "block";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISSOCK(m)) return "socket";
  return "other";
}

/*
** stat(path, follow) -> {type=, size=, mode=, mtime=, uid=, gid=} | nil, msg, code
** follow = false describes a symlink itself (lstat).  mode holds the
** permission bits only; mtime is whole seconds.
*/
static int fs_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int follow = lua_toboolean(L, 2);
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) return fs_fail(L, "stat", path, errno);
  lua_createtable(L, 0, 6);
  lua_pushstring(L, fs_typename(st.st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)st.st_mtime);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)st.st_gid);
  lua_setfield(L, -2, "gid");
  return 1;
}

/* exists(path) -> boolean (follows symlinks: a dangling link does not exist) */
static int fs_exists(lua_State *L) {
  struct stat st;
  lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
  return 1;
}

/*
** check_private(path) -> true | nil, msg, code
** EPERM when group or others have any access (secrets must be 0600 or
** stricter), ENOENT when it is missing.
*/
static int fs_check_private(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) return fs_fail(L, "stat", path, errno);
  if (st.st_mode & 077) {
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    return tlr_fail(L, "EPERM",
                    "%s has mode %s: files holding secrets must not be accessible to group or "
                    "others (chmod 600 %s)",
                    path, mode, path);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* cwd() -> string | nil, msg, code */
static int fs_cwd(lua_State *L) {
  char buf[PATH_MAX];
  if (!getcwd(buf, sizeof buf)) return fs_fail(L, "getcwd", ".", errno);
  lua_pushstring(L, buf);
  return 1;
}

/* mkdtemp(template) -> path | nil, msg, code  (template ends in XXXXXX; mode 0700) */
static int fs_mkdtemp(lua_State *L) {
  size_t len;
  const char *tpl = luaL_checklstring(L, 1, &len);
  char *buf = lua_newuserdatauv(L, len + 1, 0);
  memcpy(buf, tpl, len + 1);
  if (!mkdtemp(buf)) return fs_fail(L, "mkdtemp", tpl, errno);
  lua_pushstring(L, buf);
  return 1;
}

/* ========== lock files ========== */

typedef struct fs_lock {
  int fd; /* -1 once released */
} fs_lock;

static fs_lock *fs_checklock(lua_State *L) { return luaL_checkudata(L, 1, LOCK_MT); }

/*
** lock(path) -> Lock | nil, msg, code
** Opens (creating, 0600) and flocks path exclusively without waiting and
** writes our pid into it.  ELOCKED names the holder's pid from the file.
*/
static int fs_lock_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  fs_lock *lk = lua_newuserdatauv(L, sizeof *lk, 1); /* [path, lock] */
  lk->fd = -1;
  luaL_setmetatable(L, LOCK_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 2, 1); /* the path, for tostring */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fs_fail(L, "open", path, errno);
  lk->fd = fd;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char buf[32];
    ssize_t n = err == EWOULDBLOCK ? pread(fd, buf, sizeof buf - 1, 0) : -1;
    close(fd);
    lk->fd = -1;
    if (err != EWOULDBLOCK) return fs_fail(L, "flock", path, err);
    long pid = 0;
    if (n > 0) {
      buf[n] = 0;
      pid = strtol(buf, NULL, 10);
    }
    if (pid == (long)getpid())
      return tlr_fail(L, "ELOCKED", "%s is locked by this process already", path);
    if (pid > 0)
      return tlr_fail(L, "ELOCKED", "%s is locked by another process (pid %d)", path, (int)pid);
    return tlr_fail(L, "ELOCKED", "%s is locked by another process (pid unknown)", path);
  }
  char pid[24];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    int err = errno;
    close(fd);
    lk->fd = -1;
    return fs_fail(L, "write", path, err);
  }
  return 1;
}

/* lock:unlock() / lock:close() -> true; idempotent, also __gc and __close */
static int fs_lock_close(lua_State *L) {
  fs_lock *lk = fs_checklock(L);
  if (lk->fd >= 0) {
    int rc = ftruncate(lk->fd, 0); /* drop our pid while we still hold it */
    (void)rc;
    close(lk->fd); /* closing the last descriptor releases the flock */
    lk->fd = -1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* lock:held() -> boolean */
static int fs_lock_held(lua_State *L) {
  lua_pushboolean(L, fs_checklock(L)->fd >= 0);
  return 1;
}

static int fs_lock_tostring(lua_State *L) {
  fs_lock *lk = fs_checklock(L);
  lua_getiuservalue(L, 1, 1);
  const char *state = lk->fd >= 0 ? "held" : "released";
  lua_pushfstring(L, "tlr.fs.Lock (%s, %s)", lua_tostring(L, -1), state);
  return 1;
}

static const luaL_Reg fs_funcs[] = {
  {"read", fs_read},
  {"write", fs_write},
  {"mkdir", fs_mkdir},
  {"list", fs_list},
  {"remove", fs_remove},
  {"stat", fs_stat},
  {"exists", fs_exists},
  {"check_private", fs_check_private},
  {"cwd", fs_cwd},
  {"mkdtemp", fs_mkdtemp},
  {"lock", fs_lock_open},
  {NULL, NULL},
};

static const luaL_Reg guard_meta[] = {
  {"__gc", fs_guard_close},
  {NULL, NULL},
};

static const luaL_Reg lock_methods[] = {
  {"unlock", fs_lock_close},
  {"close", fs_lock_close},
  {"held", fs_lock_held},
  {NULL, NULL},
};

static const luaL_Reg lock_meta[] = {
  {"__gc", fs_lock_close},
  {"__close", fs_lock_close},
  {"__tostring", fs_lock_tostring},
  {NULL, NULL},
};

int luaopen_tlr_fs_core(lua_State *L) {
  tlr_newclass(L, GUARD_MT, NULL, guard_meta);
  tlr_newclass(L, LOCK_MT, lock_methods, lock_meta);
  luaL_newlib(L, fs_funcs);
  return 1;
}
