/*
** dns.c: tlr.dns.core, the DNS wire format under lua/tlr/dns/: messages
** (queries, RFC 2136 UPDATEs, replies) built from and parsed into plain
** tables, names compressed on encode and decompressed on parse, EDNS (OPT),
** and record data converted between presentation text and wire form for
** A, AAAA, CNAME, NS, PTR, DNAME, MX, SRV, TXT and SOA (others as RFC 3597
** `\# len hex`).  TSIG lives in tsig.c; sockets in net.c.
**
** An encode writes into one 64 KiB userdata buffer, so a raise on bad input
** leaks nothing.  Parsing a malformed reply is a runtime failure (EPROTO).
*/
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "dns.h"

#define COMP_MAX 1024

/* ========== names of types, classes, opcodes, rcodes ========== */

typedef struct named {
  const char *name;
  unsigned value;
} named;

static const named dns_types[] = {
  {"A", 1}, {"NS", 2}, {"CNAME", 5}, {"SOA", 6}, {"PTR", 12}, {"HINFO", 13}, {"MX", 15},
  {"TXT", 16}, {"AAAA", 28}, {"SRV", 33}, {"NAPTR", 35}, {"DNAME", 39}, {"OPT", 41},
  {"DS", 43}, {"SSHFP", 44}, {"RRSIG", 46}, {"NSEC", 47}, {"DNSKEY", 48}, {"NSEC3", 50},
  {"TLSA", 52}, {"SVCB", 64}, {"HTTPS", 65}, {"TKEY", 249}, {"TSIG", 250}, {"IXFR", 251},
  {"AXFR", 252}, {"ANY", 255}, {"CAA", 257}, {NULL, 0}};

static const named dns_classes[] = {
  {"IN", 1}, {"CH", 3}, {"HS", 4}, {"NONE", 254}, {"ANY", 255}, {NULL, 0}};

static const named dns_opcodes[] = {
  {"QUERY", 0}, {"IQUERY", 1}, {"STATUS", 2}, {"NOTIFY", 4}, {"UPDATE", 5}, {NULL, 0}};

static const named dns_rcodes[] = {
  {"NOERROR", 0}, {"FORMERR", 1}, {"SERVFAIL", 2}, {"NXDOMAIN", 3}, {"NOTIMP", 4},
  {"REFUSED", 5}, {"YXDOMAIN", 6}, {"YXRRSET", 7}, {"NXRRSET", 8}, {"NOTAUTH", 9},
  {"NOTZONE", 10}, {"BADVERS", 16}, {"BADKEY", 17}, {"BADTIME", 18}, {"BADMODE", 19},
  {"BADNAME", 20}, {"BADALG", 21}, {"BADTRUNC", 22}, {"BADCOOKIE", 23}, {NULL, 0}};

/* Pushes the mnemonic of v, or PREFIX<v> ("TYPE65280") for an unlisted value. */
static void dns_push_named(lua_State *L, const named *tab, unsigned v, const char *prefix) {
  for (const named *t = tab; t->name; t++) {
    if (t->value == v) {
      lua_pushstring(L, t->name);
      return;
    }
  }
  lua_pushfstring(L, "%s%d", prefix, (int)v);
}

/*
** Reads a mnemonic or a number (a Lua integer or "PREFIX<n>") at idx and
** raises on anything else; `what` names the argument in the message.
*/
static unsigned dns_check_named(lua_State *L, int idx, const named *tab, const char *prefix,
                                unsigned max, const char *what) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer v = lua_tointeger(L, idx);
    if (!lua_isinteger(L, idx) || v < 0 || (lua_Unsigned)v > max)
      luaL_error(L, "bad %s %s", what, lua_tostring(L, idx));
    return (unsigned)v;
  }
  const char *s = lua_tostring(L, idx);
  if (!s || lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "bad %s (string or integer expected)", what);
  for (const named *t = tab; t->name; t++)
    if (strcasecmp(t->name, s) == 0) return t->value;
  size_t plen = strlen(prefix);
  if (strncasecmp(s, prefix, plen) == 0 && s[plen]) {
    char *end;
    unsigned long v = strtoul(s + plen, &end, 10);
    if (!*end && v <= max) return (unsigned)v;
  }
  luaL_error(L, "unknown %s '%s'", what, s);
  return 0;
}

/* ========== the encoder ========== */

typedef struct enc {
  unsigned char *buf;
  size_t n;
  size_t comp[COMP_MAX]; /* offsets of names and their suffixes written so far */
  int ncomp;
} enc;

static const char *enc_room(enc *e, size_t k) {
  return e->n + k > DNS_MAXMSG ? "message longer than 65535 bytes" : NULL;
}

static const char *enc_bytes(enc *e, const void *p, size_t k) {
  const char *err = enc_room(e, k);
  if (err) return err;
  memcpy(e->buf + e->n, p, k);
  e->n += k;
  return NULL;
}

static const char *enc_u16(enc *e, unsigned v) {
  unsigned char b[2];
  dns_put16(b, v);
  return enc_bytes(e, b, 2);
}

static const char *enc_u32(enc *e, unsigned long v) {
  unsigned char b[4];
  dns_put32(b, v);
  return enc_bytes(e, b, 4);
}

/* True when the name written at buf[off] (maybe compressed) equals wire suffix w. */
static int enc_name_at(const enc *e, size_t off, const unsigned char *w) {
  size_t p = off, i = 0;
  for (;;) {
    unsigned c = e->buf[p];
    if ((c & 0xC0) == 0xC0) {
      p = (size_t)((c & 0x3F) << 8 | e->buf[p + 1]);
      continue;
    }
    if (c != w[i]) return 0;
    if (c == 0) return 1;
    for (unsigned k = 1; k <= c; k++)
      if (tolower(e->buf[p + k]) != tolower(w[i + k])) return 0;
    p += 1 + c;
    i += 1 + c;
  }
}

/*
** Writes wire name w; with `compress`, the longest suffix already in the
** message becomes a pointer to it.  New suffixes are remembered either way.
*/
static const char *enc_name(enc *e, const unsigned char *w, size_t wlen, int compress) {
  size_t i = 0, ptr = 0;
  int found = 0;
  if (compress) {
    for (i = 0; w[i] != 0 && !found; i += 1 + w[i]) {
      for (int k = 0; k < e->ncomp; k++) {
        if (enc_name_at(e, e->comp[k], w + i)) {
          ptr = e->comp[k];
          found = 1;
          break;
        }
      }
      if (found) break;
    }
  } else {
    i = wlen - 1;
  }
  size_t start = e->n;
  const char *err = enc_bytes(e, w, found ? i : wlen);
  if (!err && found) err = enc_u16(e, 0xC000 | (unsigned)ptr);
  if (err) return err;
  for (size_t j = 0; j < i && e->ncomp < COMP_MAX; j += 1 + w[j])
    if (start + j < 0x4000) e->comp[e->ncomp++] = start + j;
  return NULL;
}

/* Writes the name in text form `s` uncompressed (record data). */
static const char *enc_text_name(enc *e, const char *s, size_t len) {
  unsigned char w[DNS_MAXNAME];
  size_t wlen;
  const char *err = dns_name_from_text(s, len, w, &wlen, 0);
  return err ? err : enc_bytes(e, w, wlen);
}

/* Splits text at whitespace into at most max tokens; returns their count. */
static int split_fields(const char *s, const char **tok, size_t *tlen, int max) {
  int n = 0;
  while (*s) {
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) break;
    if (n == max) return max + 1;
    tok[n] = s;
    while (*s && *s != ' ' && *s != '\t') s++;
    tlen[n] = (size_t)(s - tok[n]);
    n++;
  }
  return n;
}

static int parse_uint(const char *s, size_t len, unsigned long max, unsigned long *out) {
  if (len == 0 || len > 10) return -1;
  unsigned long v = 0;
  for (size_t i = 0; i < len; i++) {
    if (!isdigit((unsigned char)s[i])) return -1;
    v = v * 10 + (unsigned long)(s[i] - '0');
  }
  if (v > max) return -1;
  *out = v;
  return 0;
}

static const char *enc_txt_string(enc *e, const char *s, size_t len) {
  if (len > 255) return "TXT character-string longer than 255 bytes";
  unsigned char n = (unsigned char)len;
  const char *err = enc_bytes(e, &n, 1);
  return err ? err : enc_bytes(e, s, len);
}

/* Writes RFC 3597 data "\# len hex..." */
static const char *enc_generic(enc *e, const char *s) {
  const char *tok[2];
  size_t tlen[2];
  unsigned long len;
  s += 2;
  if (split_fields(s, tok, tlen, 1) < 1 || parse_uint(tok[0], tlen[0], 65535, &len))
    return "bad \\# record data (want '\\# LENGTH HEX')";
  const char *p = tok[0] + tlen[0];
  size_t got = 0;
  int hi = -1;
  for (; *p; p++) {
    if (*p == ' ' || *p == '\t') continue;
    int v = isdigit((unsigned char)*p) ? *p - '0'
          : isxdigit((unsigned char)*p) ? tolower((unsigned char)*p) - 'a' + 10 : -1;
    if (v < 0) return "bad hex digit in \\# record data";
    if (hi < 0) {
      hi = v;
      continue;
    }
    unsigned char b = (unsigned char)(hi << 4 | v);
    hi = -1;
    const char *err = enc_bytes(e, &b, 1);
    if (err) return err;
    got++;
  }
  if (hi >= 0 || got != len) return "\\# record data length does not match its hex";
  return NULL;
}

/*
** Writes record data of `type` from the Lua value at idx: a presentation
** string, or for TXT a list of character-strings.  Returns an error text.
*/
static const char *enc_rdata(lua_State *L, enc *e, unsigned type, int idx) {
  size_t len = 0;
  const char *s = NULL;
  if (type == 16 && lua_istable(L, idx)) {
    lua_Integer n = luaL_len(L, idx);
    const char *err = n == 0 ? enc_txt_string(e, "", 0) : NULL;
    for (lua_Integer i = 1; i <= n && !err; i++) {
      lua_geti(L, idx, i);
      s = lua_tolstring(L, -1, &len);
      err = s ? enc_txt_string(e, s, len) : "TXT strings must be strings";
      lua_pop(L, 1);
    }
    return err;
  }
  if (lua_type(L, idx) != LUA_TSTRING) return "record data must be a string";
  s = lua_tolstring(L, idx, &len);
  if (len >= 2 && s[0] == '\\' && s[1] == '#') return enc_generic(e, s);
  const char *tok[8];
  size_t tl[8];
  unsigned long v[5];
  switch (type) {
  case 1: case 28: { /* A, AAAA */
    unsigned char addr[16];
    char tmp[64];
    if (len >= sizeof tmp) return "bad address";
    memcpy(tmp, s, len);
    tmp[len] = 0;
    if (inet_pton(type == 1 ? AF_INET : AF_INET6, tmp, addr) != 1)
      return type == 1 ? "bad IPv4 address" : "bad IPv6 address";
    return enc_bytes(e, addr, type == 1 ? 4 : 16);
  }
  case 2: case 5: case 12: case 39: /* NS, CNAME, PTR, DNAME */
    if (split_fields(s, tok, tl, 1) != 1) return "want one domain name";
    return enc_text_name(e, tok[0], tl[0]);
  case 15: /* MX: preference exchange */
    if (split_fields(s, tok, tl, 2) != 2 || parse_uint(tok[0], tl[0], 65535, v))
      return "bad MX data (want 'PREFERENCE NAME')";
    return enc_u16(e, (unsigned)v[0]) ? "message too long" : enc_text_name(e, tok[1], tl[1]);
  case 33: /* SRV: priority weight port target */
    if (split_fields(s, tok, tl, 4) != 4)
      return "bad SRV data (want 'PRIORITY WEIGHT PORT TARGET')";
    for (int i = 0; i < 3; i++) {
      if (parse_uint(tok[i], tl[i], 65535, v + i)) return "bad number in SRV data";
      if (enc_u16(e, (unsigned)v[i])) return "message too long";
    }
    return enc_text_name(e, tok[3], tl[3]);
  case 6: { /* SOA: mname rname serial refresh retry expire minimum */
    if (split_fields(s, tok, tl, 7) != 7) return "bad SOA data (want 7 fields)";
    const char *err = enc_text_name(e, tok[0], tl[0]);
    if (!err) err = enc_text_name(e, tok[1], tl[1]);
    for (int i = 0; i < 5 && !err; i++) {
      if (parse_uint(tok[2 + i], tl[2 + i], 0xFFFFFFFFUL, v + i)) return "bad number in SOA data";
      err = enc_u32(e, v[i]);
    }
    return err;
  }
  case 16: { /* TXT: one value, split into 255-byte character-strings */
    const char *err = len == 0 ? enc_txt_string(e, "", 0) : NULL;
    for (size_t off = 0; off < len && !err; off += 255)
      err = enc_txt_string(e, s + off, len - off > 255 ? 255 : len - off);
    return err;
  }
  default:
    return "no presentation format for this type: give rdata or '\\# LENGTH HEX'";
  }
}

/* Reads t[key] as a name and writes it (compressed or not); raises on errors. */
static void enc_field_name(lua_State *L, enc *e, int t, const char *key, int compress,
                           const char *where) {
  size_t len;
  lua_getfield(L, t, key);
  const char *s = lua_tolstring(L, -1, &len);
  if (!s || lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: name must be a string", where);
  unsigned char w[DNS_MAXNAME];
  size_t wlen;
  const char *err = dns_name_from_text(s, len, w, &wlen, 0);
  if (!err) err = enc_name(e, w, wlen, compress);
  if (err) luaL_error(L, "%s: %s ('%s')", where, err, s);
  lua_pop(L, 1);
}

static unsigned field_named(lua_State *L, int t, const char *key, const named *tab,
                            const char *prefix, unsigned def, const char *what) {
  lua_getfield(L, t, key);
  unsigned v = lua_isnil(L, -1) ? def : dns_check_named(L, -1, tab, prefix, 65535, what);
  lua_pop(L, 1);
  return v;
}

static lua_Integer field_int(lua_State *L, int t, const char *key, lua_Integer def,
                             lua_Integer max) {
  lua_getfield(L, t, key);
  lua_Integer v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0 || v > max) luaL_error(L, "bad field '%s' (integer 0..%I expected)", key, max);
  }
  lua_pop(L, 1);
  return v;
}

static int field_bool(lua_State *L, int t, const char *key) {
  lua_getfield(L, t, key);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Writes the record table at stack index t; `where` locates it in errors. */
static void enc_rr(lua_State *L, enc *e, int t, int compress, const char *where) {
  const char *err;
  if (!lua_istable(L, t)) luaL_error(L, "%s: record table expected", where);
  enc_field_name(L, e, t, "name", compress, where);
  unsigned type = field_named(L, t, "type", dns_types, "TYPE", 0, "record type");
  unsigned cls = field_named(L, t, "class", dns_classes, "CLASS", 1, "record class");
  lua_Integer ttl = field_int(L, t, "ttl", 0, 0x7FFFFFFF);
  if (type == 0) luaL_error(L, "%s: record type missing", where);
  if ((err = enc_u16(e, type)) || (err = enc_u16(e, cls)) ||
      (err = enc_u32(e, (unsigned long)ttl)) || (err = enc_u16(e, 0)))
    luaL_error(L, "%s", err);
  size_t lenpos = e->n - 2, start = e->n;
  size_t rlen;
  if (lua_getfield(L, t, "rdata") == LUA_TSTRING) {
    const char *raw = lua_tolstring(L, -1, &rlen);
    err = enc_bytes(e, raw, rlen);
  } else {
    if (!lua_isnil(L, -1)) luaL_error(L, "%s: rdata must be a string", where);
    if (lua_getfield(L, t, "data") != LUA_TNIL) err = enc_rdata(L, e, type, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!err && e->n - start > 65535) err = "record data longer than 65535 bytes";
  if (err) {
    lua_getfield(L, t, "data");
    luaL_error(L, "%s: %s ('%s')", where, err,
               lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
  }
  dns_put16(e->buf + lenpos, (unsigned)(e->n - start));
}

/* Writes the list t[key] of records (or questions); returns their count. */
static unsigned enc_section(lua_State *L, enc *e, int msg, const char *key, int question,
                            int compress) {
  if (lua_getfield(L, msg, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "bad field '%s' (list expected)", key);
  int list = lua_gettop(L);
  lua_Integer n = luaL_len(L, list);
  if (n > 65535) luaL_error(L, "too many records in '%s'", key);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, list, i);
    int t = lua_gettop(L);
    char where[64];
    snprintf(where, sizeof where, "%s[%d]", key, (int)i);
    if (question) {
      if (!lua_istable(L, t)) luaL_error(L, "%s: question table expected", where);
      enc_field_name(L, e, t, "name", compress, where);
      unsigned type = field_named(L, t, "type", dns_types, "TYPE", 1, "question type");
      unsigned cls = field_named(L, t, "class", dns_classes, "CLASS", 1, "question class");
      if (enc_u16(e, type) || enc_u16(e, cls)) luaL_error(L, "message longer than 65535 bytes");
    } else {
      enc_rr(L, e, t, compress, where);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return (unsigned)n;
}

/*
** encode(msg) -> wire string.  msg: {id, opcode, qr, aa, tc, rd, ra, ad,
** cd, rcode, question = {{name, type, class}}, answer, authority,
** additional = {{name, type, class, ttl, data | rdata}}, edns = {udp_size,
** do, version}, compress = true}.  For UPDATE the sections are zone,
** prerequisite, update and additional.  Raises on malformed input.
*/
static int dns_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  enc *e = lua_newuserdatauv(L, sizeof *e + DNS_MAXMSG, 0);
  e->buf = (unsigned char *)(e + 1);
  e->n = DNS_HEADER;
  e->ncomp = 0;
  memset(e->buf, 0, DNS_HEADER);
  lua_getfield(L, 1, "compress");
  int compress = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  unsigned id = (unsigned)field_int(L, 1, "id", 0, 65535);
  unsigned opcode = field_named(L, 1, "opcode", dns_opcodes, "OPCODE", 0, "opcode");
  unsigned rcode = field_named(L, 1, "rcode", dns_rcodes, "RCODE", 0, "rcode");
  if (opcode > 15) return luaL_error(L, "opcode out of range");
  unsigned flags = (unsigned)(field_bool(L, 1, "qr") << 15 | opcode << 11 |
                              field_bool(L, 1, "aa") << 10 | field_bool(L, 1, "tc") << 9 |
                              field_bool(L, 1, "rd") << 8 | field_bool(L, 1, "ra") << 7 |
                              field_bool(L, 1, "ad") << 5 | field_bool(L, 1, "cd") << 4) |
                   (rcode & 15);
  dns_put16(e->buf, id);
  dns_put16(e->buf + 2, flags);
  unsigned qd = enc_section(L, e, 1, "question", 1, compress);
  unsigned an = enc_section(L, e, 1, "answer", 0, compress);
  unsigned ns = enc_section(L, e, 1, "authority", 0, compress);
  unsigned ar = enc_section(L, e, 1, "additional", 0, compress);
  if (lua_getfield(L, 1, "edns") == LUA_TTABLE) {
    int t = lua_gettop(L);
    unsigned size = (unsigned)field_int(L, t, "udp_size", 1232, 65535);
    unsigned version = (unsigned)field_int(L, t, "version", 0, 255);
    unsigned char opt[11] = {0, 0, DNS_T_OPT};
    dns_put16(opt + 3, size < 512 ? 512 : size);
    opt[5] = (unsigned char)(rcode >> 4);
    opt[6] = (unsigned char)version;
    opt[7] = field_bool(L, t, "do") ? 0x80 : 0;
    const char *err = enc_bytes(e, opt, sizeof opt);
    if (err) return luaL_error(L, "%s", err);
    ar++;
  } else if (rcode > 15) {
    return luaL_error(L, "rcode %d needs edns", (int)rcode);
  }
  lua_pop(L, 1);
  dns_put16(e->buf + 4, qd);
  dns_put16(e->buf + 6, an);
  dns_put16(e->buf + 8, ns);
  dns_put16(e->buf + 10, ar);
  lua_pushlstring(L, (const char *)e->buf, e->n);
  return 1;
}

/* ========== the decoder ========== */

/* Pushes the text of a name read at msg[*off]; -1 when malformed. */
static int push_name_at(lua_State *L, const unsigned char *msg, size_t len, size_t *off) {
  unsigned char w[DNS_MAXNAME];
  size_t wlen;
  if (dns_name_read(msg, len, off, w, &wlen)) return -1;
  dns_name_push(L, w, wlen);
  return 0;
}

static void push_generic(lua_State *L, const unsigned char *p, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char head[16];
  snprintf(head, sizeof head, "\\# %u", (unsigned)n);
  luaL_addstring(&b, head);
  if (n) luaL_addchar(&b, ' ');
  for (size_t i = 0; i < n; i++) {
    char hex[3];
    snprintf(hex, sizeof hex, "%02x", p[i]);
    luaL_addlstring(&b, hex, 2);
  }
  luaL_pushresult(&b);
}

/*
** Pushes the presentation text of the record data at msg[off..off+rdlen)
** (names inside may point anywhere in msg; TXT is push_txt's).  Returns -1
** on malformed data.
*/
static int push_rdata(lua_State *L, const unsigned char *msg, size_t off,
                      size_t rdlen, unsigned type) {
  size_t end = off + rdlen, p = off;
  char buf[INET6_ADDRSTRLEN];
  switch (type) {
  case 1: case 28:
    if (rdlen != (type == 1 ? 4u : 16u)) return -1;
    inet_ntop(type == 1 ? AF_INET : AF_INET6, msg + off, buf, sizeof buf);
    lua_pushstring(L, buf);
    return 0;
  case 2: case 5: case 12: case 39:
    if (push_name_at(L, msg, end, &p) || p != end) return -1;
    return 0;
  case 15:
    if (rdlen < 3) return -1;
    p += 2;
    lua_pushfstring(L, "%d ", (int)dns_get16(msg + off));
    if (push_name_at(L, msg, end, &p) || p != end) return -1;
    lua_concat(L, 2);
    return 0;
  case 33:
    if (rdlen < 7) return -1;
    p += 6;
    lua_pushfstring(L, "%d %d %d ", (int)dns_get16(msg + off), (int)dns_get16(msg + off + 2),
                    (int)dns_get16(msg + off + 4));
    if (push_name_at(L, msg, end, &p) || p != end) return -1;
    lua_concat(L, 2);
    return 0;
  case 6: {
    if (push_name_at(L, msg, end, &p)) return -1;
    lua_pushliteral(L, " ");
    if (push_name_at(L, msg, end, &p) || p + 20 != end) return -1;
    char nums[64];
    snprintf(nums, sizeof nums, " %lu %lu %lu %lu %lu", dns_get32(msg + p), dns_get32(msg + p + 4),
             dns_get32(msg + p + 8), dns_get32(msg + p + 12), dns_get32(msg + p + 16));
    lua_pushstring(L, nums);
    lua_concat(L, 4);
    return 0;
  }
  default:
    push_generic(L, msg + off, rdlen);
    return 0;
  }
}

/* TXT: sets t.strings = {...} and pushes their concatenation. */
static int push_txt(lua_State *L, int t, const unsigned char *msg, size_t off, size_t rdlen) {
  size_t end = off + rdlen, p = off;
  int n = 0;
  lua_newtable(L);
  while (p < end) {
    size_t k = msg[p++];
    if (p + k > end) return -1;
    lua_pushlstring(L, (const char *)msg + p, k);
    lua_rawseti(L, -2, ++n);
    p += k;
  }
  lua_setfield(L, t, "strings");
  lua_getfield(L, t, "strings");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i); /* [strings, buffer, s] */
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_remove(L, -2);
  return 0;
}

/*
** Pushes a table for the record at msg[*off] and advances *off; for a
** question only {name, type, class}.  Returns NULL or what is malformed.
*/
static const char *decode_rr(lua_State *L, const unsigned char *msg, size_t len, size_t *off,
                             int question, unsigned *type_out) {
  lua_createtable(L, 0, 6);
  int t = lua_gettop(L);
  if (push_name_at(L, msg, len, off)) return "bad name";
  lua_setfield(L, t, "name");
  if (*off + (question ? 4 : 10) > len) return "record cut short";
  unsigned type = dns_get16(msg + *off), cls = dns_get16(msg + *off + 2);
  *type_out = type;
  dns_push_named(L, dns_types, type, "TYPE");
  lua_setfield(L, t, "type");
  dns_push_named(L, dns_classes, cls, "CLASS");
  lua_setfield(L, t, "class");
  if (question) {
    *off += 4;
    return NULL;
  }
  lua_pushinteger(L, (lua_Integer)dns_get32(msg + *off + 4));
  lua_setfield(L, t, "ttl");
  size_t rdlen = dns_get16(msg + *off + 8);
  *off += 10;
  if (*off + rdlen > len) return "record data cut short";
  if (rdlen == 0 && (cls == DNS_C_ANY || cls == 254)) { /* UPDATE deletes, prerequisites */
    lua_pushnil(L);
  } else if (type == 16) {
    if (push_txt(L, t, msg, *off, rdlen)) return "bad TXT data";
  } else if (type != DNS_T_OPT && type != DNS_T_TSIG) {
    if (push_rdata(L, msg, *off, rdlen, type)) return "bad record data";
  } else {
    lua_pushnil(L);
  }
  lua_setfield(L, t, "data");
  *off += rdlen;
  return NULL;
}

/* Replaces the OPT record table on top with the edns table of the message at m. */
static void decode_opt(lua_State *L, int m, const unsigned char *msg, size_t len, size_t start,
                       unsigned *ext_rcode) {
  size_t off = start;
  dns_name_skip(msg, len, &off);
  lua_pop(L, 1);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, dns_get16(msg + off + 2));
  lua_setfield(L, -2, "udp_size");
  *ext_rcode = msg[off + 4];
  lua_pushinteger(L, msg[off + 5]);
  lua_setfield(L, -2, "version");
  lua_pushboolean(L, msg[off + 6] & 0x80);
  lua_setfield(L, -2, "do");
  lua_setfield(L, m, "edns");
}

/* Replaces the TSIG record table on top with the tsig table of the message at m. */
static const char *decode_tsig(lua_State *L, int m, const unsigned char *msg, size_t len,
                               size_t start) {
  size_t off = start;
  int t = lua_gettop(L);
  dns_name_skip(msg, len, &off);
  size_t p = off + 10, end = p + dns_get16(msg + off + 8);
  if (push_name_at(L, msg, end, &p)) return "bad TSIG algorithm";
  lua_setfield(L, t, "algorithm");
  if (p + 10 > end) return "TSIG cut short";
  double when = (double)dns_get16(msg + p) * 4294967296.0 + (double)dns_get32(msg + p + 2);
  lua_pushinteger(L, (lua_Integer)when);
  lua_setfield(L, t, "time");
  lua_pushinteger(L, dns_get16(msg + p + 6));
  lua_setfield(L, t, "fudge");
  size_t maclen = dns_get16(msg + p + 8);
  p += 10;
  if (p + maclen + 6 > end) return "TSIG cut short";
  lua_pushlstring(L, (const char *)msg + p, maclen);
  lua_setfield(L, t, "mac");
  p += maclen;
  lua_pushinteger(L, dns_get16(msg + p));
  lua_setfield(L, t, "original_id");
  unsigned error = dns_get16(msg + p + 2);
  if (error == 16) lua_pushliteral(L, "BADSIG"); /* BADVERS in OPT, BADSIG in TSIG */
  else dns_push_named(L, dns_rcodes, error, "RCODE");
  lua_setfield(L, t, "error");
  size_t olen = dns_get16(msg + p + 4);
  p += 6;
  if (p + olen != end) return "bad TSIG other data";
  lua_pushlstring(L, (const char *)msg + p, olen);
  lua_setfield(L, t, "other");
  lua_pushnil(L);
  lua_setfield(L, t, "data");
  lua_setfield(L, m, "tsig");
  return NULL;
}

static const char *const section_names[] = {"question", "answer", "authority", "additional"};

/*
** decode(wire) -> msg | nil, msg, "EPROTO".  msg: {id, qr, opcode, aa, tc,
** rd, ra, ad, cd, rcode (a name, extended by EDNS), question, answer,
** authority, additional (without OPT and TSIG), edns?, tsig?}; records are
** {name, type, class, ttl, data} (TXT adds strings).
*/
static int dns_decode(lua_State *L) {
  size_t len;
  const unsigned char *msg = (const unsigned char *)luaL_checklstring(L, 1, &len);
  if (len < DNS_HEADER) return tlr_fail(L, "EPROTO", "DNS message shorter than its header");
  lua_settop(L, 1);
  lua_createtable(L, 0, 16);
  int m = 2;
  unsigned flags = dns_get16(msg + 2);
  lua_pushinteger(L, dns_get16(msg));
  lua_setfield(L, m, "id");
  static const struct { const char *name; unsigned bit; } bits[] = {
    {"qr", 15}, {"aa", 10}, {"tc", 9}, {"rd", 8}, {"ra", 7}, {"ad", 5}, {"cd", 4}};
  for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
    lua_pushboolean(L, flags >> bits[i].bit & 1);
    lua_setfield(L, m, bits[i].name);
  }
  dns_push_named(L, dns_opcodes, flags >> 11 & 15, "OPCODE");
  lua_setfield(L, m, "opcode");
  unsigned counts[4] = {dns_get16(msg + 4), dns_get16(msg + 6), dns_get16(msg + 8),
                        dns_get16(msg + 10)};
  unsigned ext_rcode = 0;
  size_t off = DNS_HEADER;
  for (int s = 0; s < 4; s++) {
    lua_createtable(L, (int)(counts[s] < 64 ? counts[s] : 64), 0);
    int list = lua_gettop(L), n = 0;
    for (unsigned i = 0; i < counts[s]; i++) {
      size_t start = off;
      unsigned type;
      const char *err = decode_rr(L, msg, len, &off, s == 0, &type);
      if (err) {
        return tlr_fail(L, "EPROTO", "malformed DNS message: %s in %s record %d (byte %d)", err,
                        section_names[s], (int)i + 1, (int)start);
      }
      if (s == 3 && type == DNS_T_OPT) {
        decode_opt(L, m, msg, len, start, &ext_rcode);
      } else if (s == 3 && type == DNS_T_TSIG && i + 1 == counts[s]) {
        err = decode_tsig(L, m, msg, len, start);
        if (err) return tlr_fail(L, "EPROTO", "malformed DNS message: %s", err);
      } else {
        lua_rawseti(L, list, ++n);
      }
    }
    lua_setfield(L, m, section_names[s]);
  }
  if (off != len) return tlr_fail(L, "EPROTO", "malformed DNS message: %d bytes of trailing data",
                                  (int)(len - off));
  dns_push_named(L, dns_rcodes, ext_rcode << 4 | (flags & 15), "RCODE");
  lua_setfield(L, m, "rcode");
  return 1;
}

/* ========== single records ========== */

/*
** rdata(type, data) -> wire record data | nil, msg, "EINVAL".  data is
** presentation text (or a list of strings for TXT).  Lets Lua validate
** and normalise values before it builds a message.
*/
static int dns_rdata(lua_State *L) {
  unsigned type = dns_check_named(L, 1, dns_types, "TYPE", 65535, "record type");
  luaL_checkany(L, 2);
  enc *e = lua_newuserdatauv(L, sizeof *e + DNS_MAXMSG, 0);
  e->buf = (unsigned char *)(e + 1);
  e->n = 0;
  e->ncomp = 0;
  const char *err = enc_rdata(L, e, type, 2);
  if (err) {
    if (lua_type(L, 2) == LUA_TSTRING)
      return tlr_fail(L, "EINVAL", "%s record '%s': %s", lua_tostring(L, 1), lua_tostring(L, 2),
                      err);
    return tlr_fail(L, "EINVAL", "%s record: %s", lua_tostring(L, 1), err);
  }
  lua_pushlstring(L, (const char *)e->buf, e->n);
  return 1;
}

/*
** rdata_text(type, wire) -> presentation text (TXT: the joined strings,
** then the list) | nil, msg, "EINVAL".  The inverse of rdata.
*/
static int dns_rdata_text(lua_State *L) {
  unsigned type = dns_check_named(L, 1, dns_types, "TYPE", 65535, "record type");
  size_t len;
  const unsigned char *w = (const unsigned char *)luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  if (type == 16) {
    lua_newtable(L);
    if (push_txt(L, 3, w, 0, len)) return tlr_fail(L, "EINVAL", "malformed TXT data");
    lua_getfield(L, 3, "strings");
    return 2;
  }
  if (push_rdata(L, w, 0, len, type)) return tlr_fail(L, "EINVAL", "malformed record data");
  return 1;
}

/*
** name(text) -> canonical text (lowercase, absolute, escapes normalised),
** wire form | nil, msg, "EINVAL".
*/
static int dns_name(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char w[DNS_MAXNAME];
  size_t wlen;
  const char *err = dns_name_from_text(s, len, w, &wlen, 1);
  if (err) return tlr_fail(L, "EINVAL", "bad domain name '%s': %s", s, err);
  dns_name_push(L, w, wlen);
  lua_pushlstring(L, (const char *)w, wlen);
  return 2;
}

/* rcode_name(n) / type_name(n) / type_code(name) */
static int dns_rcode_name(lua_State *L) {
  dns_push_named(L, dns_rcodes, (unsigned)luaL_checkinteger(L, 1), "RCODE");
  return 1;
}

static int dns_type_code(lua_State *L) {
  lua_pushinteger(L, dns_check_named(L, 1, dns_types, "TYPE", 65535, "record type"));
  return 1;
}

static int dns_type_name(lua_State *L) {
  unsigned v = dns_check_named(L, 1, dns_types, "TYPE", 65535, "record type");
  dns_push_named(L, dns_types, v, "TYPE");
  return 1;
}

static const luaL_Reg dns_funcs[] = {
  {"decode", dns_decode},
  {"encode", dns_encode},
  {"name", dns_name},
  {"rcode_name", dns_rcode_name},
  {"rdata", dns_rdata},
  {"rdata_text", dns_rdata_text},
  {"type_code", dns_type_code},
  {"type_name", dns_type_name},
  {NULL, NULL}
};

int luaopen_tlr_dns_core(lua_State *L) {
  luaL_newlib(L, dns_funcs);
  return 1;
}
