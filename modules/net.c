/*
** net.c: tlr.net.core, nonblocking UDP and TCP sockets for protocols that
** curl does not speak (DNS).  A socket never blocks: send/recv report "not
** now" with false, and the caller waits for readiness through the event
** loop (sock:watch -> id, sched.await(id), sock:unwatch).  Addresses are
** numeric IPv4/IPv6 only: name lookups would block the loop.
**
** tlr.net.Socket follows liolib: one idempotent close (also __gc and
** __close) that unwatches and closes the descriptor.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tlr.h"

#define SOCKET_MT "tlr.net.Socket"
#define RECV_MAX 65536

typedef struct net_socket {
  int fd;  /* -1 once closed */
  int type; /* SOCK_DGRAM or SOCK_STREAM */
  lua_Integer watch; /* current watch id, 0 for none */
} net_socket;

/* Maps an errno of connect/send/recv to a registered code. */
static const char *net_code(int err) {
  switch (err) {
  case ECONNREFUSED: return "ECONNREFUSED";
  case ECONNRESET: case EPIPE: case ECONNABORTED: return "ECONNRESET";
  case ETIMEDOUT: return "ETIMEDOUT";
  case ENETUNREACH: case EHOSTUNREACH: case EADDRNOTAVAIL: return "ETRANSPORT";
  default: return "ETRANSPORT";
  }
}

/* Parses a numeric host and port into ss; returns its length or 0. */
static socklen_t net_addr(const char *host, lua_Integer port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((unsigned short)port);
    return sizeof *in4;
  }
  const char *h = host;
  char buf[64];
  size_t n = strlen(host);
  if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
    memcpy(buf, host + 1, n - 2);
    buf[n - 2] = 0;
    h = buf;
  }
  if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((unsigned short)port);
    return sizeof *in6;
  }
  return 0;
}

static void net_push_addr(lua_State *L, const struct sockaddr_storage *ss) {
  char buf[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_pushinteger(L, ntohs(in6->sin6_port));
  } else {
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &in4->sin_addr, buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_pushinteger(L, ntohs(in4->sin_port));
  }
}

static net_socket *net_check(lua_State *L) {
  net_socket *s = luaL_checkudata(L, 1, SOCKET_MT);
  if (s->fd < 0) luaL_error(L, "attempt to use a closed socket");
  return s;
}

static int net_socket_close(lua_State *L) {
  net_socket *s = luaL_checkudata(L, 1, SOCKET_MT);
  if (s->fd < 0) return 0;
  if (s->watch) tlr_loop_unwatch(tlr_loop_get(L), s->watch);
  s->watch = 0;
  close(s->fd);
  s->fd = -1;
  return 0;
}

/*
** Opens a socket of `type` to or at host:port.  mode: 'c' connect (TCP:
** in progress until writable), 'b' bind.  Pushes the Socket or a failure.
*/
static int net_open(lua_State *L, int type, int mode) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port >= 0 && port <= 65535 && (port > 0 || mode == 'b'), 2, "port out of range");
  struct sockaddr_storage ss;
  socklen_t slen = net_addr(host, port, &ss);
  if (!slen) return luaL_argerror(L, 1, "numeric IPv4 or IPv6 address expected");
  tlr_loop_get(L); /* before the socket exists: it may raise */
  net_socket *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->fd = -1;
  s->type = type;
  s->watch = 0;
  luaL_setmetatable(L, SOCKET_MT);
  int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return tlr_fail(L, "ETRANSPORT", "socket: %s", strerror(errno));
  s->fd = fd;
  int rc;
  if (mode == 'b') {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    rc = bind(fd, (struct sockaddr *)&ss, slen);
    if (rc == 0 && type == SOCK_STREAM) rc = listen(fd, 64);
  } else {
    if (type == SOCK_STREAM) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    rc = connect(fd, (struct sockaddr *)&ss, slen);
    if (rc < 0 && errno == EINPROGRESS) rc = 0;
  }
  if (rc < 0) {
    int err = errno;
    close(fd);
    s->fd = -1;
    return tlr_fail(L, mode == 'b' ? "ETRANSPORT" : net_code(err), "%s %s port %d: %s",
                    mode == 'b' ? "bind" : "connect", host, (int)port, strerror(err));
  }
  return 1;
}

/* udp(host, port) -> Socket (connected) | nil, msg, code */
static int net_udp(lua_State *L) { return net_open(L, SOCK_DGRAM, 'c'); }

/* tcp(host, port) -> Socket, connecting: wait for "w", then :connected() */
static int net_tcp(lua_State *L) { return net_open(L, SOCK_STREAM, 'c'); }

/* udp_bind(host, port) -> Socket bound (port 0: any free port) */
static int net_udp_bind(lua_State *L) { return net_open(L, SOCK_DGRAM, 'b'); }

/* tcp_listen(host, port) -> Socket listening; :accept() takes connections */
static int net_tcp_listen(lua_State *L) { return net_open(L, SOCK_STREAM, 'b'); }

/* sock:connected() -> true | false (still connecting) | nil, msg, code */
static int net_socket_connected(lua_State *L) {
  net_socket *s = net_check(L);
  struct pollfd p = {s->fd, POLLOUT, 0};
  if (poll(&p, 1, 0) == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err) return tlr_fail(L, net_code(err), "connect: %s", strerror(err));
  lua_pushboolean(L, 1);
  return 1;
}

/* sock:send(data [, i]) -> bytes sent from data[i..] (0: not now) | nil, msg, code */
static int net_socket_send(lua_State *L) {
  net_socket *s = net_check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_Integer i = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, i >= 1 && (size_t)i <= len + 1, 3, "start out of range");
  ssize_t n = send(s->fd, data + i - 1, len - (size_t)(i - 1), MSG_NOSIGNAL);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) n = 0;
    else return tlr_fail(L, net_code(errno), "send: %s", strerror(errno));
  }
  lua_pushinteger(L, n);
  return 1;
}

/* sock:sendto(data, host, port) -> bytes (0: not now) | nil, msg, code (unconnected UDP) */
static int net_socket_sendto(lua_State *L) {
  net_socket *s = net_check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *host = luaL_checkstring(L, 3);
  lua_Integer port = luaL_checkinteger(L, 4);
  struct sockaddr_storage ss;
  socklen_t slen = net_addr(host, port, &ss);
  if (!slen) return luaL_argerror(L, 3, "numeric IPv4 or IPv6 address expected");
  ssize_t n = sendto(s->fd, data, len, MSG_NOSIGNAL, (struct sockaddr *)&ss, slen);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) n = 0;
    else return tlr_fail(L, net_code(errno), "sendto: %s", strerror(errno));
  }
  lua_pushinteger(L, n);
  return 1;
}

/*
** sock:recv([max]) -> data ("" at the end of a TCP stream) | false (nothing
** yet) | nil, msg, code.  On UDP one call returns one datagram.
*/
static int net_socket_recv(lua_State *L) {
  net_socket *s = net_check(L);
  lua_Integer max = luaL_optinteger(L, 2, RECV_MAX);
  luaL_argcheck(L, max > 0 && max <= RECV_MAX, 2, "size out of range");
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)max);
  ssize_t n = recv(s->fd, p, (size_t)max, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return tlr_fail(L, net_code(errno), "recv: %s", strerror(errno));
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* sock:recvfrom() -> data, host, port | false | nil, msg, code (UDP) */
static int net_socket_recvfrom(lua_State *L) {
  net_socket *s = net_check(L);
  struct sockaddr_storage ss;
  socklen_t slen = sizeof ss;
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, RECV_MAX);
  ssize_t n = recvfrom(s->fd, p, RECV_MAX, 0, (struct sockaddr *)&ss, &slen);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return tlr_fail(L, net_code(errno), "recvfrom: %s", strerror(errno));
  }
  luaL_pushresultsize(&b, (size_t)n);
  net_push_addr(L, &ss);
  return 3;
}

/* sock:accept() -> Socket, host, port | false | nil, msg, code (listening TCP) */
static int net_socket_accept(lua_State *L) {
  net_socket *s = net_check(L);
  net_socket *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->fd = -1;
  c->type = SOCK_STREAM;
  c->watch = 0;
  luaL_setmetatable(L, SOCKET_MT);
  struct sockaddr_storage ss;
  socklen_t slen = sizeof ss;
  int fd = accept4(s->fd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return tlr_fail(L, net_code(errno), "accept: %s", strerror(errno));
  }
  c->fd = fd;
  net_push_addr(L, &ss);
  return 3;
}

/*
** sock:watch(events) -> id: the loop notifies id while the socket is
** readable ("r"), writable ("w") or either ("rw").  Replaces the previous
** watch; wait with sched.await(id) and call :unwatch() after.
*/
static int net_socket_watch(lua_State *L) {
  net_socket *s = net_check(L);
  const char *ev = luaL_checkstring(L, 2);
  short events = 0;
  if (strchr(ev, 'r')) events |= POLLIN;
  if (strchr(ev, 'w')) events |= POLLOUT;
  luaL_argcheck(L, events != 0, 2, "\"r\", \"w\" or \"rw\" expected");
  tlr_loop *loop = tlr_loop_get(L);
  if (s->watch) tlr_loop_unwatch(loop, s->watch);
  s->watch = tlr_loop_watch(loop, s->fd, events);
  lua_pushinteger(L, s->watch);
  return 1;
}

static int net_socket_unwatch(lua_State *L) {
  net_socket *s = net_check(L);
  if (s->watch) tlr_loop_unwatch(tlr_loop_get(L), s->watch);
  s->watch = 0;
  return 0;
}

/* sock:local_address() -> host, port */
static int net_socket_local_address(lua_State *L) {
  net_socket *s = net_check(L);
  struct sockaddr_storage ss;
  socklen_t slen = sizeof ss;
  if (getsockname(s->fd, (struct sockaddr *)&ss, &slen) < 0)
    return tlr_fail(L, "ETRANSPORT", "getsockname: %s", strerror(errno));
  net_push_addr(L, &ss);
  return 2;
}

static int net_socket_tostring(lua_State *L) {
  net_socket *s = luaL_checkudata(L, 1, SOCKET_MT);
  lua_pushfstring(L, "tlr.net.Socket (%s, %s)", s->type == SOCK_DGRAM ? "udp" : "tcp",
                  s->fd < 0 ? "closed" : "open");
  return 1;
}

static const luaL_Reg net_funcs[] = {
  {"tcp", net_tcp},
  {"tcp_listen", net_tcp_listen},
  {"udp", net_udp},
  {"udp_bind", net_udp_bind},
  {NULL, NULL}
};

static const luaL_Reg socket_methods[] = {
  {"accept", net_socket_accept},
  {"close", net_socket_close},
  {"connected", net_socket_connected},
  {"local_address", net_socket_local_address},
  {"recv", net_socket_recv},
  {"recvfrom", net_socket_recvfrom},
  {"send", net_socket_send},
  {"sendto", net_socket_sendto},
  {"unwatch", net_socket_unwatch},
  {"watch", net_socket_watch},
  {NULL, NULL}
};

static const luaL_Reg socket_meta[] = {
  {"__close", net_socket_close},
  {"__gc", net_socket_close},
  {"__tostring", net_socket_tostring},
  {NULL, NULL}
};

int luaopen_tlr_net_core(lua_State *L) {
  tlr_newclass(L, SOCKET_MT, socket_methods, socket_meta);
  luaL_newlib(L, net_funcs);
  return 1;
}
