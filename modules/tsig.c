/*
** tsig.c: tlr.tsig.core, transaction signatures (RFC 8945) over the wire
** messages that dns.c builds: sign a request (append the TSIG record),
** verify a reply (against the request's MAC) or the later messages of a
** zone transfer (prior MAC + unsigned messages + timers only).  HMAC-MD5,
** -SHA1, -SHA224, -SHA256, -SHA384 and -SHA512 through OpenSSL's one-shot
** HMAC(); the MAC input is assembled in a luaL_Buffer, so nothing is held
** across a raise.
*/
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dns.h"

typedef struct tsig_alg {
  const char *name;  /* as users write it */
  const char *wire;  /* the algorithm's domain name */
  const EVP_MD *(*md)(void);
} tsig_alg;

static const tsig_alg tsig_algs[] = {
  {"hmac-md5", "hmac-md5.sig-alg.reg.int.", EVP_md5},
  {"hmac-sha1", "hmac-sha1.", EVP_sha1},
  {"hmac-sha224", "hmac-sha224.", EVP_sha224},
  {"hmac-sha256", "hmac-sha256.", EVP_sha256},
  {"hmac-sha384", "hmac-sha384.", EVP_sha384},
  {"hmac-sha512", "hmac-sha512.", EVP_sha512},
  {NULL, NULL, NULL}};

/* The algorithm for "hmac-sha256", "HMAC-SHA256." or its full domain name; NULL if unknown. */
static const tsig_alg *tsig_alg_find(const char *s, size_t len) {
  if (len > 0 && s[len - 1] == '.') len--;
  for (const tsig_alg *a = tsig_algs; a->name; a++) {
    size_t wl = strlen(a->wire) - 1;
    if ((strlen(a->name) == len && strncasecmp(a->name, s, len) == 0) ||
        (wl == len && strncasecmp(a->wire, s, len) == 0))
      return a;
  }
  return NULL;
}

/* A key read from the Lua table {name, algorithm, secret (raw bytes)}. */
typedef struct tsig_key {
  unsigned char name[DNS_MAXNAME]; /* canonical: lowercase wire form */
  size_t namelen;
  unsigned char alg[DNS_MAXNAME];
  size_t alglen;
  const tsig_alg *a;
  const char *secret;
  size_t secretlen;
} tsig_key;

/* Reads the key table at idx; raises on a malformed key (a programmer error). */
static void tsig_checkkey(lua_State *L, int idx, tsig_key *k) {
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t len;
  lua_getfield(L, idx, "name");
  const char *s = lua_tolstring(L, -1, &len);
  if (!s) luaL_error(L, "bad TSIG key (name expected)");
  const char *err = dns_name_from_text(s, len, k->name, &k->namelen, 1);
  if (err) luaL_error(L, "bad TSIG key name '%s': %s", s, err);
  lua_getfield(L, idx, "algorithm");
  s = lua_tolstring(L, -1, &len);
  if (!s) luaL_error(L, "bad TSIG key (algorithm expected)");
  k->a = tsig_alg_find(s, len);
  if (!k->a) luaL_error(L, "unknown TSIG algorithm '%s' (hmac-md5, hmac-sha1, hmac-sha224, "
                           "hmac-sha256, hmac-sha384 or hmac-sha512)", s);
  dns_name_from_text(k->a->wire, strlen(k->a->wire), k->alg, &k->alglen, 1);
  lua_getfield(L, idx, "secret");
  k->secret = lua_tolstring(L, -1, &k->secretlen);
  if (!k->secret || k->secretlen == 0) luaL_error(L, "bad TSIG key (secret expected: raw bytes)");
  lua_pop(L, 3); /* the strings stay alive in the key table */
}

/* The signing-time fields of one TSIG record. */
typedef struct tsig_vars {
  unsigned long long time;
  unsigned fudge, error;
  const char *other;
  size_t otherlen;
} tsig_vars;

static void put48(unsigned char *p, unsigned long long v) {
  dns_put16(p, (unsigned)(v >> 32));
  dns_put32(p + 2, (unsigned long)(v & 0xFFFFFFFFUL));
}

/*
** Computes the MAC over: [request MAC with its u16 length] [prior data]
** msg (header rewritten with `id` and `arcount`) and the TSIG variables
** (or only the timers).  out gets EVP_MAX_MD_SIZE bytes at most.
*/
static int tsig_compute(lua_State *L, const tsig_key *k, const char *reqmac, size_t reqlen,
                        int with_req, const char *prior, size_t priorlen,
                        const unsigned char *msg, size_t msglen, unsigned id, unsigned arcount,
                        const tsig_vars *v, int timers_only, unsigned char *out,
                        unsigned *outlen) {
  luaL_Buffer b;
  unsigned char hdr[DNS_HEADER], tmp[16];
  luaL_buffinit(L, &b);
  if (with_req) {
    dns_put16(tmp, (unsigned)reqlen);
    luaL_addlstring(&b, (const char *)tmp, 2);
    luaL_addlstring(&b, reqmac, reqlen);
  }
  if (prior) luaL_addlstring(&b, prior, priorlen);
  memcpy(hdr, msg, DNS_HEADER);
  dns_put16(hdr, id);
  dns_put16(hdr + 10, arcount);
  luaL_addlstring(&b, (const char *)hdr, DNS_HEADER);
  luaL_addlstring(&b, (const char *)msg + DNS_HEADER, msglen - DNS_HEADER);
  if (!timers_only) {
    luaL_addlstring(&b, (const char *)k->name, k->namelen);
    dns_put16(tmp, DNS_C_ANY);
    dns_put32(tmp + 2, 0);
    luaL_addlstring(&b, (const char *)tmp, 6);
    luaL_addlstring(&b, (const char *)k->alg, k->alglen);
  }
  put48(tmp, v->time);
  dns_put16(tmp + 6, v->fudge);
  luaL_addlstring(&b, (const char *)tmp, 8);
  if (!timers_only) {
    dns_put16(tmp, v->error);
    dns_put16(tmp + 2, (unsigned)v->otherlen);
    luaL_addlstring(&b, (const char *)tmp, 4);
    luaL_addlstring(&b, v->other, v->otherlen);
  }
  luaL_pushresult(&b);
  size_t dlen;
  const unsigned char *data = (const unsigned char *)lua_tolstring(L, -1, &dlen);
  int ok = HMAC(k->a->md(), k->secret, (int)k->secretlen, data, dlen, out, outlen) != NULL;
  lua_pop(L, 1);
  return ok;
}

static const char *opt_lstring(lua_State *L, int idx, const char *key, size_t *len) {
  return tlr_optstring(L, idx, key, NULL, len);
}

/*
** sign(wire, key, opts) -> signed wire, mac | nil, msg, "ECRYPTO".
** key = {name, algorithm, secret (raw bytes)}; opts: time (default now),
** fudge (300), request_mac (for a reply or a later transfer message),
** prior (unsigned messages since the last signed one), timers_only,
** error (TSIG error code), other.
*/
static int tsig_sign(lua_State *L) {
  static const char *const allowed[] = {"time", "fudge", "request_mac", "prior", "timers_only",
                                        "error", "other", NULL};
  size_t len, reqlen = 0, priorlen = 0;
  const unsigned char *msg = (const unsigned char *)luaL_checklstring(L, 1, &len);
  tsig_key k;
  tsig_checkkey(L, 2, &k);
  tlr_checkopts(L, 3, allowed);
  tsig_vars v = {0, 300, 0, "", 0};
  lua_Integer t = tlr_optinteger(L, 3, "time", (lua_Integer)time(NULL));
  luaL_argcheck(L, t >= 0 && t < ((lua_Integer)1 << 48), 3, "time out of range");
  v.time = (unsigned long long)t;
  v.fudge = (unsigned)tlr_optinteger(L, 3, "fudge", 300);
  v.error = (unsigned)tlr_optinteger(L, 3, "error", 0);
  const char *other = opt_lstring(L, 3, "other", &v.otherlen);
  if (other) v.other = other;
  const char *reqmac = opt_lstring(L, 3, "request_mac", &reqlen);
  const char *prior = opt_lstring(L, 3, "prior", &priorlen);
  int timers_only = tlr_optboolean(L, 3, "timers_only", 0);
  luaL_argcheck(L, len >= DNS_HEADER, 1, "DNS message shorter than its header");
  luaL_argcheck(L, v.fudge <= 65535 && v.error <= 65535 && v.otherlen <= 65535, 3,
                "fudge, error or other out of range");
  unsigned arcount = dns_get16(msg + 10), id = dns_get16(msg);
  luaL_argcheck(L, arcount < 65535, 1, "additional section full");
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned maclen = 0;
  if (!tsig_compute(L, &k, reqmac, reqlen, reqmac != NULL, prior, priorlen, msg, len, id, arcount,
                    &v, timers_only, mac, &maclen))
    return tlr_fail(L, "ECRYPTO", "TSIG: HMAC with %s failed", k.a->name);
  size_t rdlen = k.alglen + 16 + maclen + v.otherlen;
  size_t total = len + k.namelen + 10 + rdlen;
  if (total > DNS_MAXMSG) return tlr_fail(L, "ETOOBIG", "signed DNS message exceeds 65535 bytes");
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, total), *p = out;
  memcpy(p, msg, len);
  dns_put16(p + 10, arcount + 1);
  p += len;
  memcpy(p, k.name, k.namelen);
  p += k.namelen;
  dns_put16(p, DNS_T_TSIG);
  dns_put16(p + 2, DNS_C_ANY);
  dns_put32(p + 4, 0);
  dns_put16(p + 8, (unsigned)rdlen);
  p += 10;
  memcpy(p, k.alg, k.alglen);
  p += k.alglen;
  put48(p, v.time);
  dns_put16(p + 6, v.fudge);
  dns_put16(p + 8, maclen);
  p += 10;
  memcpy(p, mac, maclen);
  p += maclen;
  dns_put16(p, id);
  dns_put16(p + 2, v.error);
  dns_put16(p + 4, (unsigned)v.otherlen);
  p += 6;
  memcpy(p, v.other, v.otherlen);
  luaL_pushresultsize(&b, total);
  lua_pushlstring(L, (const char *)mac, maclen);
  return 2;
}

static void set_int(lua_State *L, const char *key, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, key);
}

static void set_str(lua_State *L, const char *key, const char *s) {
  lua_pushstring(L, s);
  lua_setfield(L, -2, key);
}

static const char *tsig_error_name(unsigned e) {
  switch (e) {
  case 0: return "NOERROR";
  case 16: return "BADSIG";
  case 17: return "BADKEY";
  case 18: return "BADTIME";
  case 22: return "BADTRUNC";
  default: return NULL;
  }
}

/*
** verify(wire, key, opts) -> ok, info | nil, msg, "EPROTO".
** opts: request_mac (the MAC of the request this answers), prior (the
** unsigned messages of a transfer since the last signed one), timers_only
** (a transfer message after the first), now (default: the clock).
** ok is true when the last record is a TSIG by this key whose MAC and time
** check out.  info: {status = NOERROR | UNSIGNED | BADKEY | BADSIG |
** BADTIME | BADTRUNC, by = "server" (the server's own TSIG error) or
** "client", error (the TSIG error field), mac, time, fudge, original_id,
** server_time (BADTIME with a time in other data)}.
*/
static int tsig_verify(lua_State *L) {
  static const char *const allowed[] = {"request_mac", "prior", "timers_only", "now", NULL};
  size_t len, reqlen = 0, priorlen = 0;
  const unsigned char *msg = (const unsigned char *)luaL_checklstring(L, 1, &len);
  tsig_key k;
  tsig_checkkey(L, 2, &k);
  tlr_checkopts(L, 3, allowed);
  const char *reqmac = opt_lstring(L, 3, "request_mac", &reqlen);
  const char *prior = opt_lstring(L, 3, "prior", &priorlen);
  int timers_only = tlr_optboolean(L, 3, "timers_only", 0);
  lua_Integer now = tlr_optinteger(L, 3, "now", (lua_Integer)time(NULL));
  size_t start;
  if (dns_find_last_rr(msg, len, &start)) return tlr_fail(L, "EPROTO", "malformed DNS message");
  lua_newtable(L);
  set_str(L, "by", "client");
  size_t off = start;
  if (start == 0 || dns_name_skip(msg, len, &off) || dns_get16(msg + off) != DNS_T_TSIG) {
    set_str(L, "status", "UNSIGNED");
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  unsigned char name[DNS_MAXNAME], alg[DNS_MAXNAME];
  size_t namelen, alglen, p = start;
  if (dns_name_read(msg, len, &p, name, &namelen)) return tlr_fail(L, "EPROTO", "bad TSIG name");
  size_t rd = p + 10, end = rd + dns_get16(msg + p + 8);
  if (dns_get16(msg + p + 2) != DNS_C_ANY || end != len ||
      dns_name_read(msg, end, &rd, alg, &alglen) || rd + 16 > end)
    return tlr_fail(L, "EPROTO", "malformed TSIG record");
  tsig_vars v;
  v.time = (unsigned long long)dns_get16(msg + rd) << 32 | dns_get32(msg + rd + 2);
  v.fudge = dns_get16(msg + rd + 6);
  size_t maclen = dns_get16(msg + rd + 8);
  const unsigned char *mac = msg + rd + 10;
  if (rd + 16 + maclen > end) return tlr_fail(L, "EPROTO", "malformed TSIG record");
  size_t q = rd + 10 + maclen;
  unsigned orig_id = dns_get16(msg + q);
  v.error = dns_get16(msg + q + 2);
  v.otherlen = dns_get16(msg + q + 4);
  v.other = (const char *)msg + q + 6;
  if (q + 6 + v.otherlen != end) return tlr_fail(L, "EPROTO", "malformed TSIG record");
  set_int(L, "time", (lua_Integer)v.time);
  set_int(L, "fudge", v.fudge);
  set_int(L, "original_id", orig_id);
  lua_pushlstring(L, (const char *)mac, maclen);
  lua_setfield(L, -2, "mac");
  const char *ename = tsig_error_name(v.error);
  if (ename) set_str(L, "error", ename);
  else set_int(L, "error", v.error);
  if (v.otherlen == 6) { /* BADTIME: the server's clock */
    const unsigned char *o = (const unsigned char *)v.other;
    unsigned long long server = (unsigned long long)dns_get16(o) << 32 | dns_get32(o + 2);
    set_int(L, "server_time", (lua_Integer)server);
  }
  const char *status = "NOERROR";
  unsigned char want[EVP_MAX_MD_SIZE];
  unsigned wantlen = 0;
  if (!dns_name_equal(name, namelen, k.name, k.namelen) ||
      !dns_name_equal(alg, alglen, k.alg, k.alglen)) {
    status = "BADKEY";
  } else if (v.error != 0) {
    status = ename ? ename : "BADSIG";
    set_str(L, "by", "server");
  } else {
    if (!tsig_compute(L, &k, reqmac, reqlen, reqmac != NULL, prior, priorlen, msg, start, orig_id,
                      dns_get16(msg + 10) - 1, &v, timers_only, want, &wantlen))
      return tlr_fail(L, "ECRYPTO", "TSIG: HMAC with %s failed", k.a->name);
    size_t minlen = wantlen / 2 > 10 ? wantlen / 2 : 10;
    if (maclen > wantlen || maclen < minlen) status = maclen == 0 ? "BADSIG" : "BADTRUNC";
    else if (CRYPTO_memcmp(mac, want, maclen) != 0) status = "BADSIG";
    else if ((unsigned long long)(now < 0 ? 0 : now) + v.fudge < v.time ||
             v.time + v.fudge < (unsigned long long)now)
      status = "BADTIME";
  }
  set_str(L, "status", status);
  lua_pushboolean(L, strcmp(status, "NOERROR") == 0);
  lua_insert(L, -2);
  return 2;
}

/* algorithms() -> {"hmac-md5", ...}; canonical(alg) -> the algorithm's domain name or nil */
static int tsig_algorithms(lua_State *L) {
  lua_newtable(L);
  for (int i = 0; tsig_algs[i].name; i++) {
    lua_pushstring(L, tsig_algs[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int tsig_canonical(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const tsig_alg *a = tsig_alg_find(s, len);
  if (!a) return 0;
  lua_pushstring(L, a->name);
  lua_pushstring(L, a->wire);
  return 2;
}

static const luaL_Reg tsig_funcs[] = {
  {"algorithms", tsig_algorithms},
  {"canonical", tsig_canonical},
  {"sign", tsig_sign},
  {"verify", tsig_verify},
  {NULL, NULL}
};

int luaopen_tlr_tsig_core(lua_State *L) {
  luaL_newlib(L, tsig_funcs);
  return 1;
}
