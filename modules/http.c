/*
** http.c: HTTP/1.1 and HTTP/2 requests on libcurl's multi interface
** (tlr.http.core).  A request is a tlr.http.Request userdata that owns one
** easy handle; the event loop (runtime/loop.c) drives it and notifies its
** id when data arrived or it finished.  lua/tlr/http.lua waits on the id and
** turns the request into a plain result table.
**
** TLS: verification is on unless `insecure`; `fingerprint` pins the peer's
** certificate (SHA-256 of the DER, as Proxmox shows it) both in the
** handshake and again before each request is sent, so a reused connection
** cannot slip past the pin.
*/
#include <ctype.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tlr.h"
#include "tlr_curl.h"

#define REQUEST_MT "tlr.http.Request"
#define DEFAULT_MAX_SIZE (256L * 1024 * 1024)

typedef struct buffer {
  char *data;
  size_t len, cap;
} buffer;

typedef struct request {
  tlr_transfer transfer;  /* first: the loop finds it through CURLOPT_PRIVATE */
  CURL *easy;
  tlr_loop *loop;
  struct curl_slist *headers;
  struct curl_slist *resolve;
  char *body;            /* request body, owned */
  buffer response;       /* body received (whole, or since the last take()) */
  buffer head;           /* response header lines, "\n"-separated */
  buffer trailers;       /* header lines after the body began (HTTP/2 trailers) */
  char reason[256];      /* status line text */
  char errbuf[CURL_ERROR_SIZE];
  unsigned char pin[32]; /* expected certificate SHA-256 */
  int pinned;
  int pin_mismatch;
  int body_started;
  int too_big;
  int streaming;         /* notify on every chunk; take() drains */
  curl_off_t max_size;
  curl_off_t received;
} request;

/*
** libcurl runs on the shared libssl.so.3/libcrypto.so.3 while tlr's own
** OpenSSL is linked statically (start-up time).  The pin check handles
** curl's SSL objects, so it must call the shared copy: these pointers are
** resolved from the libraries libcurl loaded.
*/
static struct {
  void (*ctx_set_verify)(SSL_CTX *, int, SSL_verify_cb);
  void (*ctx_set_cert_verify_callback)(SSL_CTX *, int (*)(X509_STORE_CTX *, void *), void *);
  X509 *(*store_get0_cert)(const X509_STORE_CTX *);
  void (*store_set_error)(X509_STORE_CTX *, int);
  int (*digest)(const X509 *, const EVP_MD *, unsigned char *, unsigned int *);
  const EVP_MD *(*sha256)(void);
  X509 *(*get1_peer_certificate)(const SSL *);
  void (*x509_free)(X509 *);
} curl_ssl;

static const char *curl_ssl_load(void) {
  static int state = 0;
  if (state) return state > 0 ? NULL : "cannot find libcurl's OpenSSL for certificate pinning";
  state = -1;
  void *ssl = dlopen("libssl.so.3", RTLD_NOW | RTLD_NOLOAD);
  void *crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_NOLOAD);
  if (!ssl || !crypto) return curl_ssl_load();
  *(void **)&curl_ssl.ctx_set_verify = dlsym(ssl, "SSL_CTX_set_verify");
  *(void **)&curl_ssl.ctx_set_cert_verify_callback = dlsym(ssl, "SSL_CTX_set_cert_verify_callback");
  *(void **)&curl_ssl.get1_peer_certificate = dlsym(ssl, "SSL_get1_peer_certificate");
  *(void **)&curl_ssl.store_get0_cert = dlsym(crypto, "X509_STORE_CTX_get0_cert");
  *(void **)&curl_ssl.store_set_error = dlsym(crypto, "X509_STORE_CTX_set_error");
  *(void **)&curl_ssl.digest = dlsym(crypto, "X509_digest");
  *(void **)&curl_ssl.sha256 = dlsym(crypto, "EVP_sha256");
  *(void **)&curl_ssl.x509_free = dlsym(crypto, "X509_free");
  if (!curl_ssl.ctx_set_verify || !curl_ssl.ctx_set_cert_verify_callback ||
      !curl_ssl.get1_peer_certificate || !curl_ssl.store_get0_cert || !curl_ssl.store_set_error ||
      !curl_ssl.digest || !curl_ssl.sha256 || !curl_ssl.x509_free)
    return curl_ssl_load();
  state = 1;
  return NULL;
}

/* ========== buffers ========== */

static int buffer_append(buffer *b, const char *data, size_t len) {
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + len + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

static void buffer_free(buffer *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ========== curl callbacks (no Lua in here) ========== */

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  request *r = ud;
  size_t len = size * n;
  r->body_started = 1;
  r->received += (curl_off_t)len;
  if (r->max_size > 0 && r->received > r->max_size) {
    r->too_big = 1;
    return 0;  /* aborts the transfer with CURLE_WRITE_ERROR */
  }
  if (buffer_append(&r->response, data, len) != 0) return 0;
  if (r->streaming) tlr_loop_notify(r->loop, r->transfer.id);
  return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  request *r = ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    /* a new status line (after 100 Continue or a redirect): start over */
    r->head.len = 0;
    r->body_started = 0;
    const char *sp = memchr(data, ' ', len);
    const char *end = data + len;
    r->reason[0] = '\0';
    if (sp && (sp = memchr(sp + 1, ' ', (size_t)(end - sp - 1)))) {
      size_t rlen = (size_t)(end - sp - 1);
      while (rlen > 0 && (sp[rlen] == '\r' || sp[rlen] == '\n')) rlen--;
      if (rlen >= sizeof r->reason) rlen = sizeof r->reason - 1;
      memcpy(r->reason, sp + 1, rlen);
      r->reason[rlen] = '\0';
    }
    return len;
  }
  buffer *dest = r->body_started ? &r->trailers : &r->head;
  while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n')) len--;
  if (len > 0 && (buffer_append(dest, data, len) != 0 || buffer_append(dest, "\n", 1) != 0))
    return 0;
  return size * n;
}

static int pin_matches(const unsigned char *pin, X509 *cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!cert || !curl_ssl.digest(cert, curl_ssl.sha256(), md, &mdlen) || mdlen != 32) return 0;
  return CRYPTO_memcmp(md, pin, 32) == 0;
}

/* Replaces chain verification in the handshake: only the leaf's pin counts. */
static int on_verify(X509_STORE_CTX *store, void *ud) {
  request *r = ud;
  if (pin_matches(r->pin, curl_ssl.store_get0_cert(store))) return 1;
  r->pin_mismatch = 1;
  curl_ssl.store_set_error(store, X509_V_ERR_CERT_REJECTED);
  return 0;
}

static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *ud) {
  (void)easy;
  /* curl set VERIFY_NONE (verifypeer off); PEER makes a rejection fatal */
  curl_ssl.ctx_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
  curl_ssl.ctx_set_cert_verify_callback(ssl_ctx, on_verify, ud);
  return CURLE_OK;
}

/* Before every request, also on a reused connection: check the pin again. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
  (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;
  request *r = ud;
  struct curl_tlssessioninfo *info = NULL;
  if (curl_easy_getinfo(r->easy, CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK || !info ||
      info->backend != CURLSSLBACKEND_OPENSSL || !info->internals) {
    r->pin_mismatch = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  X509 *cert = curl_ssl.get1_peer_certificate(info->internals);
  int ok = pin_matches(r->pin, cert);
  curl_ssl.x509_free(cert);
  if (!ok) {
    r->pin_mismatch = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

/* ========== the Request userdata ========== */

static request *check_request(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  if (!r->easy) luaL_error(L, "attempt to use a closed request");
  return r;
}

static int request_close(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  if (r->easy) {
    tlr_loop_remove_transfer(r->loop, r->easy, &r->transfer);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
  }
  curl_slist_free_all(r->headers);
  r->headers = NULL;
  curl_slist_free_all(r->resolve);
  r->resolve = NULL;
  free(r->body);
  r->body = NULL;
  buffer_free(&r->response);
  buffer_free(&r->head);
  buffer_free(&r->trailers);
  return 0;
}

static int request_id(lua_State *L) {
  lua_pushinteger(L, check_request(L)->transfer.id);
  return 1;
}

/* started() -> true once a status line or any body byte has arrived */
static int request_started(lua_State *L) {
  request *r = check_request(L);
  lua_pushboolean(L, r->reason[0] != '\0' || r->head.len > 0 || r->body_started);
  return 1;
}

static int request_done(lua_State *L) {
  lua_pushboolean(L, check_request(L)->transfer.done);
  return 1;
}

/* take() -> the body bytes received since the last take (streaming requests) */
static int request_take(lua_State *L) {
  request *r = check_request(L);
  lua_pushlstring(L, r->response.data ? r->response.data : "", r->response.len);
  r->response.len = 0;
  return 1;
}

/* Pushes a table name -> value from "Name: value\n" lines; repeats are joined with ", ". */
static void push_header_table(lua_State *L, const buffer *b) {
  lua_newtable(L);
  const char *p = b->data, *end = b->data + b->len;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    const char *colon = memchr(p, ':', (size_t)(nl - p));
    if (colon && colon > p) {
      luaL_Buffer name;
      luaL_buffinit(L, &name);
      for (const char *c = p; c < colon; c++) luaL_addchar(&name, (char)tolower((unsigned char)*c));
      luaL_pushresult(&name);  /* [t, name] */
      const char *v = colon + 1;
      while (v < nl && (*v == ' ' || *v == '\t')) v++;
      const char *ve = nl;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TSTRING) {  /* [t, name, old] */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    p = nl + 1;
  }
}

static const char *code_for(request *r, CURLcode rc) {
  if (r->pin_mismatch) return "EPIN";
  if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) return "ETOOBIG";
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "ETIMEDOUT";
    case CURLE_COULDNT_CONNECT: return "ECONNREFUSED";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "ERESOLVE";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED: return "ETLS";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2_STREAM: return "ECONNRESET";
    case CURLE_UNSUPPORTED_PROTOCOL: /* HTTP/0.9 garbage; schemes are checked in Lua */
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_BAD_CONTENT_ENCODING: return "EPROTO";
    default: return "ETRANSPORT";
  }
}

/*
** result() -> {status, reason, headers, trailers, body, http_version}
**           | nil, msg, code   (connect, TLS, timeout, reset, size limit)
** Only valid once the request is done.
*/
static int request_result(lua_State *L) {
  request *r = check_request(L);
  if (!r->transfer.done) return luaL_error(L, "request has not finished");
  CURLcode rc = (CURLcode)r->transfer.result;
  const char *url = NULL;
  curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
  if (rc != CURLE_OK) {
    const char *code = code_for(r, rc);
    const char *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
    if (r->pin_mismatch) detail = "the server's certificate does not match the pinned fingerprint";
    else if (r->too_big) detail = "reply larger than max_size";
    /* the URL without its query: queries may carry tokens */
    size_t ulen = url ? strcspn(url, "?") : 0;
    lua_pushlstring(L, url ? url : "", ulen);
    return tlr_fail(L, code, "%s: %s", lua_tostring(L, -1), detail);
  }
  long status = 0, version = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &version);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  lua_pushstring(L, r->reason);
  lua_setfield(L, -2, "reason");
  push_header_table(L, &r->head);
  lua_setfield(L, -2, "headers");
  push_header_table(L, &r->trailers);
  lua_setfield(L, -2, "trailers");
  lua_pushlstring(L, r->response.data ? r->response.data : "", r->response.len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, version == CURL_HTTP_VERSION_2_0 ? "2"
                    : version == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1");
  lua_setfield(L, -2, "http_version");
  return 1;
}

/* ========== starting a request ========== */

static int parse_fingerprint(const char *s, unsigned char out[32]) {
  int n = 0;
  while (*s && n < 32) {
    if (*s == ':') {
      s++;
      continue;
    }
    if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1])) return -1;
    char hex[3] = {s[0], s[1], 0};
    out[n++] = (unsigned char)strtol(hex, NULL, 16);
    s += 2;
  }
  return (n == 32 && *s == '\0') ? 0 : -1;
}

static const char *const start_opts[] = {
  "method", "url", "headers", "body", "timeout", "connect_timeout", "ca", "ca_file",
  "fingerprint", "cert", "key", "insecure", "http2", "max_size", "stream", "max_age_conn",
  "resolve", "fresh_connect", NULL
};

/* Raises unless opts.headers is absent or a list of "Name: value" lines. */
static void check_headers(lua_State *L, int opts) {
  int t = lua_getfield(L, opts, "headers");
  luaL_argcheck(L, t == LUA_TNIL || t == LUA_TTABLE, 1, "option 'headers': table expected");
  if (t == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING && strchr(lua_tostring(L, -1), ':'), 1,
                    "option 'headers': list of \"Name: value\" lines expected");
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* opts.headers as a curl list (checked already); NULL when out of memory. */
static struct curl_slist *build_headers(lua_State *L, int opts) {
  struct curl_slist *list = curl_slist_append(NULL, "Expect:");  /* no 100-continue */
  if (lua_getfield(L, opts, "headers") == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n && list; i++) {
      lua_rawgeti(L, -1, i);
      struct curl_slist *next = curl_slist_append(list, lua_tostring(L, -1));
      if (!next) curl_slist_free_all(list);
      list = next;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return list;
}

/*
** start{method=, url=, headers=, body=, timeout=, connect_timeout=, ca=, ca_file=,
**       fingerprint=, cert=, key=, insecure=, http2=, max_size=, stream=,
**       max_age_conn=, resolve=, fresh_connect=} -> Request
** Raises on bad options (lua/tlr/http.lua validates the public shape first).
*/
static int http_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  tlr_checkopts(L, 1, start_opts);
  const char *method = tlr_optstring(L, 1, "method", "GET", NULL);
  const char *url = tlr_optstring(L, 1, "url", NULL, NULL);
  size_t body_len = 0;
  const char *body = tlr_optstring(L, 1, "body", NULL, &body_len);
  lua_Number timeout = tlr_optnumber(L, 1, "timeout", 0);
  lua_Number connect_timeout = tlr_optnumber(L, 1, "connect_timeout", 10);
  size_t ca_len = 0, cert_len = 0, key_len = 0;
  const char *ca = tlr_optstring(L, 1, "ca", NULL, &ca_len);
  const char *ca_file = tlr_optstring(L, 1, "ca_file", NULL, NULL);
  const char *fingerprint = tlr_optstring(L, 1, "fingerprint", NULL, NULL);
  const char *cert = tlr_optstring(L, 1, "cert", NULL, &cert_len);
  const char *key = tlr_optstring(L, 1, "key", NULL, &key_len);
  int insecure = tlr_optboolean(L, 1, "insecure", 0);
  const char *http2 = NULL;
  if (lua_getfield(L, 1, "http2") == LUA_TSTRING) http2 = lua_tostring(L, -1);
  else if (lua_toboolean(L, -1)) http2 = "tls";
  lua_pop(L, 1);
  lua_Integer max_size = tlr_optinteger(L, 1, "max_size", DEFAULT_MAX_SIZE);
  int stream = tlr_optboolean(L, 1, "stream", 0);
  int fresh_connect = tlr_optboolean(L, 1, "fresh_connect", 0);
  lua_Integer max_age_conn = tlr_optinteger(L, 1, "max_age_conn", 0);
  unsigned char pin[32];
  luaL_argcheck(L, url != NULL, 1, "option 'url' is required");
  luaL_argcheck(L, !fingerprint || parse_fingerprint(fingerprint, pin) == 0, 1,
                "option 'fingerprint': 32 hex bytes expected (AB:CD:...)");
  luaL_argcheck(L, !http2 || !strcmp(http2, "tls") || !strcmp(http2, "prior"), 1,
                "option 'http2': true, \"tls\" or \"prior\" expected");
  luaL_argcheck(L, timeout >= 0 && connect_timeout >= 0, 1, "timeouts must be >= 0");
  luaL_argcheck(L, (cert == NULL) == (key == NULL), 1, "options 'cert' and 'key' go together");
  check_headers(L, 1);
  /* resolve: list of "host:port:address" (tests point names at loopback) */
  int resolve_type = lua_getfield(L, 1, "resolve");
  luaL_argcheck(L, resolve_type == LUA_TNIL || resolve_type == LUA_TTABLE, 1,
                "option 'resolve': list of \"host:port:address\" expected");
  lua_Integer nresolve = resolve_type == LUA_TTABLE ? luaL_len(L, -1) : 0;
  for (lua_Integer i = 1; i <= nresolve; i++) {
    lua_rawgeti(L, -1, i);
    luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 1, "option 'resolve': strings expected");
    lua_pop(L, 1);
  }
  /* every check is done: from here on only runtime failures, no raising */
  tlr_loop *loop = tlr_loop_get(L);
  const char *no_pinning = fingerprint ? curl_ssl_load() : NULL;
  if (no_pinning) return tlr_fail(L, "ETLS", "%s", no_pinning);
  request *r = lua_newuserdatauv(L, sizeof *r, 0);  /* [.., resolve, r] */
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, REQUEST_MT);
  r->loop = loop;
  r->streaming = stream;
  r->max_size = max_size;
  r->headers = build_headers(L, 1);
  for (lua_Integer i = 1; i <= nresolve; i++) {
    lua_rawgeti(L, -2, i);
    r->resolve = curl_slist_append(r->resolve, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  r->easy = curl_easy_init();
  if (!r->easy || !r->headers) return tlr_fail(L, "ETRANSPORT", "out of memory starting a request");
  r->transfer.id = tlr_loop_newid(loop);
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  if (r->resolve) curl_easy_setopt(e, CURLOPT_RESOLVE, r->resolve);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_timeout * 1000));
  if (max_size > 0) curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_size);
  if (max_age_conn > 0) curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, (long)max_age_conn);
  if (fresh_connect) curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
  if (http2) {
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     strcmp(http2, "prior") == 0 ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                                 : (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);  /* share one h2 connection */
    /* libcurl would reuse a cached HTTP/1.1 connection to the same host for
       an h2 request; a TLS setting it compares (and that changes nothing,
       DEFAULT is OpenSSL's default list) keeps the two pools apart */
    if (strcmp(http2, "tls") == 0) curl_easy_setopt(e, CURLOPT_SSL_CIPHER_LIST, "DEFAULT");
  } else {
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  }
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "GET") != 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }
  if (body) {
    r->body = malloc(body_len ? body_len : 1);
    if (!r->body) return tlr_fail(L, "ETRANSPORT", "out of memory for the request body");
    memcpy(r->body, body, body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }
  /* TLS */
  if (ca) {
    struct curl_blob blob = {(void *)ca, ca_len, CURL_BLOB_COPY};
    curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
  if (cert) {
    struct curl_blob cblob = {(void *)cert, cert_len, CURL_BLOB_COPY};
    struct curl_blob kblob = {(void *)key, key_len, CURL_BLOB_COPY};
    curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cblob);
    curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kblob);
    curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (fingerprint) {
    /* the pin replaces chain and name checks: Proxmox certs are self-signed */
    memcpy(r->pin, pin, sizeof pin);
    r->pinned = 1;
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, r);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
  } else if (insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (tlr_loop_add_transfer(loop, e, &r->transfer) != 0)
    return tlr_fail(L, "ETRANSPORT", "cannot add the request to the event loop");
  return 1;
}

static const luaL_Reg request_methods[] = {
  {"close", request_close},
  {"done", request_done},
  {"id", request_id},
  {"result", request_result},
  {"started", request_started},
  {"take", request_take},
  {NULL, NULL}
};

static const luaL_Reg request_meta[] = {
  {"__gc", request_close},
  {"__close", request_close},
  {NULL, NULL}
};

static const luaL_Reg http_funcs[] = {
  {"start", http_start},
  {NULL, NULL}
};

int luaopen_tlr_http_core(lua_State *L) {
  tlr_newclass(L, REQUEST_MT, request_methods, request_meta);
  luaL_newlib(L, http_funcs);
  return 1;
}
