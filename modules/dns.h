/*
** dns.h: private to modules/dns.c (wire format) and modules/tsig.c (TSIG),
** not part of the host API.  Byte order helpers, domain names in wire form
** (text -> wire, reading with decompression, skipping) and the walk over a
** message's records that both natives need.
**
** Everything here is static inline: the natives export one symbol each.
*/
#ifndef TLR_DNS_H
#define TLR_DNS_H

#include <ctype.h>
#include <string.h>

#include "tlr.h"

#define DNS_HEADER 12
#define DNS_MAXNAME 255
#define DNS_MAXMSG 65535
#define DNS_T_OPT 41
#define DNS_T_TSIG 250
#define DNS_C_ANY 255

static inline unsigned dns_get16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

static inline unsigned long dns_get32(const unsigned char *p) {
  return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

static inline void dns_put16(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static inline void dns_put32(unsigned char *p, unsigned long v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/*
** Converts a name in presentation form ("node1.lab.test", trailing dot
** optional, "." or "" for the root, `\.` and `\DDD` escapes) to uncompressed
** wire form in out[DNS_MAXNAME]; lowercases it when `lower`.  Returns NULL
** and sets *outlen, or a static message saying what is wrong.
*/
static inline const char *dns_name_from_text(const char *s, size_t len, unsigned char *out,
                                             size_t *outlen, int lower) {
  size_t n = 0, i = 0;
  if (len == 1 && s[0] == '.') len = 0;
  while (i < len) {
    size_t lenpos = n++;
    unsigned label = 0;
    if (n >= DNS_MAXNAME) return "name longer than 255 bytes";
    while (i < len && s[i] != '.') {
      unsigned c = (unsigned char)s[i++];
      if (c == '\\') {
        if (i >= len) return "name ends with a backslash";
        if (isdigit((unsigned char)s[i])) {
          const unsigned char *d = (const unsigned char *)s + i;
          if (i + 2 >= len || !isdigit(d[1]) || !isdigit(d[2])) return "bad \\DDD escape in name";
          c = (unsigned)(d[0] - '0') * 100 + (unsigned)(d[1] - '0') * 10 + (unsigned)(d[2] - '0');
          if (c > 255) return "bad \\DDD escape in name";
          i += 3;
        } else {
          c = (unsigned char)s[i++];
        }
      }
      if (++label > 63) return "label longer than 63 bytes";
      if (n + 1 >= DNS_MAXNAME) return "name longer than 255 bytes";
      out[n++] = (unsigned char)(lower ? tolower((int)c) : (int)c);
    }
    if (label == 0) return "empty label in name";
    out[lenpos] = (unsigned char)label;
    if (i < len) i++; /* the dot; a trailing one ends the loop */
  }
  out[n++] = 0;
  *outlen = n;
  return NULL;
}

/*
** Reads the (possibly compressed) name at msg[*off] into uncompressed wire
** form out[DNS_MAXNAME] and advances *off past it.  Pointers must point
** backwards, which also rules out loops.  Returns 0, or -1 on a malformed name.
*/
static inline int dns_name_read(const unsigned char *msg, size_t len, size_t *off,
                                unsigned char *out, size_t *outlen) {
  size_t p = *off, n = 0, end = 0;
  int jumped = 0;
  for (;;) {
    if (p >= len) return -1;
    unsigned c = msg[p];
    if ((c & 0xC0) == 0xC0) {
      if (p + 1 >= len) return -1;
      size_t target = (size_t)((c & 0x3F) << 8 | msg[p + 1]);
      if (target >= p) return -1;
      if (!jumped) end = p + 2;
      jumped = 1;
      p = target;
      continue;
    }
    if (c & 0xC0) return -1; /* 0x40/0x80: obsolete label types */
    if (p + 1 + c > len || n + 1 + c > DNS_MAXNAME) return -1;
    memcpy(out + n, msg + p, 1 + c);
    n += 1 + c;
    p += 1 + c;
    if (c == 0) break;
  }
  *off = jumped ? end : p;
  *outlen = n;
  return 0;
}

/* Advances *off past the name there without decoding it; 0 or -1. */
static inline int dns_name_skip(const unsigned char *msg, size_t len, size_t *off) {
  size_t p = *off;
  for (;;) {
    if (p >= len) return -1;
    unsigned c = msg[p];
    if ((c & 0xC0) == 0xC0) {
      if (p + 1 >= len) return -1;
      *off = p + 2;
      return 0;
    }
    if (c & 0xC0) return -1;
    p += 1 + c;
    if (c == 0) break;
  }
  if (p > len) return -1;
  *off = p;
  return 0;
}

/* Case-insensitive equality of two uncompressed wire names. */
static inline int dns_name_equal(const unsigned char *a, size_t alen, const unsigned char *b,
                                 size_t blen) {
  if (alen != blen) return 0;
  for (size_t i = 0; i < alen; i++)
    if (tolower(a[i]) != tolower(b[i])) return 0;
  return 1;
}

/* Pushes the presentation form of a wire name ("node1.lab.test.", "."). */
static inline void dns_name_push(lua_State *L, const unsigned char *w, size_t wlen) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t i = 0;
  if (wlen <= 1) luaL_addchar(&b, '.');
  while (i < wlen && w[i]) {
    unsigned n = w[i++];
    for (unsigned k = 0; k < n && i < wlen; k++, i++) {
      unsigned c = w[i];
      if (c == '.' || c == '\\' || c == '"' || c == ';' || c == '(' || c == ')' || c == '@' ||
          c == '$') {
        luaL_addchar(&b, '\\');
        luaL_addchar(&b, (char)c);
      } else if (c <= 0x20 || c >= 0x7F) {
        char esc[5];
        snprintf(esc, sizeof esc, "\\%03u", c);
        luaL_addstring(&b, esc);
      } else {
        luaL_addchar(&b, (char)c);
      }
    }
    luaL_addchar(&b, '.');
  }
  luaL_pushresult(&b);
}

/* The four section counts of a message header. */
typedef struct dns_counts {
  unsigned qd, an, ns, ar;
} dns_counts;

/*
** Walks msg to the start of its last additional record: *last gets that
** offset (0 when ARCOUNT is 0).  Returns 0, or -1 when the message is cut
** short or malformed.
*/
static inline int dns_find_last_rr(const unsigned char *msg, size_t len, size_t *last) {
  if (len < DNS_HEADER) return -1;
  dns_counts c = {dns_get16(msg + 4), dns_get16(msg + 6), dns_get16(msg + 8), dns_get16(msg + 10)};
  size_t off = DNS_HEADER;
  for (unsigned i = 0; i < c.qd; i++) {
    if (dns_name_skip(msg, len, &off) || off + 4 > len) return -1;
    off += 4;
  }
  unsigned total = c.an + c.ns + c.ar;
  *last = 0;
  for (unsigned i = 0; i < total; i++) {
    size_t start = off;
    if (dns_name_skip(msg, len, &off) || off + 10 > len) return -1;
    size_t rdlen = dns_get16(msg + off + 8);
    off += 10 + rdlen;
    if (off > len) return -1;
    *last = start;
  }
  if (c.ar == 0) *last = 0;
  return 0;
}

#endif
