/*
** x509.c: tlr.x509.core, the certificate half of lua/tlr/crypto.lua:
** building certificates (self-signed CAs, leaves signed by a CA) and CSRs,
** parsing both into plain tables, and verifying a chain.  Keys are the
** tlr.crypto.Key userdata of crypto.c (layout in crypto.h).
**
** The Lua side validates and normalises the spec tables; the functions here
** read a whole spec into a C struct first (raising on wrong types), and
** only then acquire OpenSSL objects, all of them inside a crypto_scratch.
*/
#include <arpa/inet.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "crypto.h"

#define X509_MAX_RDN 32
#define X509_MAX_SAN 256
#define X509_MAX_EKU 16

/* Key usage names in bit order (RFC 5280 4.2.1.3) and OpenSSL's flag for each. */
static const struct {
  const char *name;
  uint32_t flag;
} x509_key_usages[] = {
  {"digital_signature", KU_DIGITAL_SIGNATURE}, {"content_commitment", KU_NON_REPUDIATION},
  {"key_encipherment", KU_KEY_ENCIPHERMENT},   {"data_encipherment", KU_DATA_ENCIPHERMENT},
  {"key_agreement", KU_KEY_AGREEMENT},         {"cert_sign", KU_KEY_CERT_SIGN},
  {"crl_sign", KU_CRL_SIGN},                   {"encipher_only", KU_ENCIPHER_ONLY},
  {"decipher_only", KU_DECIPHER_ONLY},
};
#define X509_NKU ((int)(sizeof x509_key_usages / sizeof x509_key_usages[0]))

static const struct {
  const char *name;
  int nid;
} x509_ext_key_usages[] = {
  {"server_auth", NID_server_auth},     {"client_auth", NID_client_auth},
  {"code_signing", NID_code_sign},      {"email_protection", NID_email_protect},
  {"time_stamping", NID_time_stamp},    {"ocsp_signing", NID_OCSP_sign},
};
#define X509_NEKU ((int)(sizeof x509_ext_key_usages / sizeof x509_ext_key_usages[0]))

/* Everything a certificate or CSR is built from, read from Lua up front. */
typedef struct x509_spec {
  int nrdn, ndns, nip, neku, is_ca;
  int rdn_nid[X509_MAX_RDN];
  const char *rdn_val[X509_MAX_RDN];
  const char *dns[X509_MAX_SAN];
  unsigned char ip[X509_MAX_SAN][16];
  int iplen[X509_MAX_SAN];
  int eku[X509_MAX_EKU];
  unsigned ku;        /* bit i set: x509_key_usages[i] */
  long path_len;      /* -1: no limit */
  int64_t not_before, not_after;
  const char *bad_ip; /* the first address that did not parse */
} x509_spec;

/* ========== reading specs (may raise; nothing acquired yet) ========== */

/* Pushes spec[field], which must be a list of strings or nil; returns its length. */
static int x509_getlist(lua_State *L, int t, const char *field, int max) {
  int type = lua_getfield(L, t, field);
  if (type == LUA_TNIL) return 0;
  if (type != LUA_TTABLE) luaL_error(L, "spec.%s: table expected", field);
  int n = (int)luaL_len(L, -1);
  if (n > max) luaL_error(L, "spec.%s: more than %d entries", field, max);
  for (int i = 1; i <= n; i++) {
    if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
      luaL_error(L, "spec.%s[%d]: string expected", field, i);
    lua_pop(L, 1);
  }
  return n;
}

/* The string list[i] of the list on top; it stays referenced by the spec. */
static const char *x509_listitem(lua_State *L, int i) {
  lua_rawgeti(L, -1, i);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

/* Reads subject ({{attr, value}, ...}), dns_names and ip_addresses. */
static void x509_read_names(lua_State *L, int t, x509_spec *sp) {
  int type = lua_getfield(L, t, "subject");
  if (type != LUA_TNIL && type != LUA_TTABLE) luaL_error(L, "spec.subject: table expected");
  sp->nrdn = type == LUA_TNIL ? 0 : (int)luaL_len(L, -1);
  if (sp->nrdn > X509_MAX_RDN) luaL_error(L, "spec.subject: too many attributes");
  for (int i = 0; i < sp->nrdn; i++) {
    lua_rawgeti(L, -1, i + 1);  /* [subject, pair] */
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    const char *attr = lua_tostring(L, -2), *val = lua_tostring(L, -1);
    if (!attr || !val) luaL_error(L, "spec.subject[%d]: {attr, value} strings expected", i + 1);
    sp->rdn_nid[i] = OBJ_txt2nid(attr);
    if (sp->rdn_nid[i] == NID_undef) luaL_error(L, "spec.subject: unknown attribute '%s'", attr);
    sp->rdn_val[i] = val;
    lua_pop(L, 3);
  }
  lua_pop(L, 1);
  sp->ndns = x509_getlist(L, t, "dns_names", X509_MAX_SAN);
  for (int i = 0; i < sp->ndns; i++) sp->dns[i] = x509_listitem(L, i + 1);
  lua_pop(L, 1);
  sp->nip = x509_getlist(L, t, "ip_addresses", X509_MAX_SAN);
  sp->bad_ip = NULL;
  for (int i = 0; i < sp->nip; i++) {
    const char *ip = x509_listitem(L, i + 1);
    if (inet_pton(AF_INET, ip, sp->ip[i]) == 1) sp->iplen[i] = 4;
    else if (inet_pton(AF_INET6, ip, sp->ip[i]) == 1) sp->iplen[i] = 16;
    else if (!sp->bad_ip) sp->bad_ip = ip;
  }
  lua_pop(L, 1);
}

/* Reads the certificate-only fields: usages, CA flag, validity. */
static void x509_read_usage(lua_State *L, int t, x509_spec *sp) {
  int n = x509_getlist(L, t, "key_usage", X509_NKU * 2);
  sp->ku = 0;
  for (int i = 1; i <= n; i++) {
    const char *name = x509_listitem(L, i);
    int k = 0;
    while (k < X509_NKU && strcmp(x509_key_usages[k].name, name) != 0) k++;
    if (k == X509_NKU) luaL_error(L, "spec.key_usage: unknown key usage '%s'", name);
    sp->ku |= 1u << k;
  }
  lua_pop(L, 1);
  sp->neku = x509_getlist(L, t, "ext_key_usage", X509_MAX_EKU);
  for (int i = 0; i < sp->neku; i++) {
    const char *name = x509_listitem(L, i + 1);
    int k = 0;
    while (k < X509_NEKU && strcmp(x509_ext_key_usages[k].name, name) != 0) k++;
    if (k == X509_NEKU) luaL_error(L, "spec.ext_key_usage: unknown usage '%s'", name);
    sp->eku[i] = x509_ext_key_usages[k].nid;
  }
  lua_pop(L, 1);
  sp->is_ca = tlr_optboolean(L, t, "is_ca", 0);
  sp->path_len = (long)tlr_optinteger(L, t, "path_len", -1);
  sp->not_before = (int64_t)tlr_optinteger(L, t, "not_before", 0);
  sp->not_after = (int64_t)tlr_optinteger(L, t, "not_after", 0);
}

/* spec[field] as a Key (required). */
static crypto_key *x509_getkey(lua_State *L, int t, const char *field) {
  lua_getfield(L, t, field);
  crypto_key *k = luaL_testudata(L, -1, CRYPTO_KEY_MT);
  if (!k) luaL_error(L, "spec.%s: tlr.crypto.Key expected", field);
  if (!k->pkey) luaL_error(L, "spec.%s: attempt to use a closed key", field);
  lua_pop(L, 1);  /* the spec keeps it alive */
  return k;
}

/* ========== building (plain C: no Lua calls) ========== */

static X509_NAME *x509_build_name(const x509_spec *sp) {
  X509_NAME *name = X509_NAME_new();
  for (int i = 0; name && i < sp->nrdn; i++) {
    if (!X509_NAME_add_entry_by_NID(name, sp->rdn_nid[i], MBSTRING_UTF8,
                                    (const unsigned char *)sp->rdn_val[i], -1, -1, 0)) {
      X509_NAME_free(name);
      return NULL;
    }
  }
  return name;
}

/* The subjectAltName value for the spec's DNS names and IPs, or NULL on error. */
static GENERAL_NAMES *x509_build_sans(const x509_spec *sp) {
  GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
  for (int i = 0; gens && i < sp->ndns + sp->nip; i++) {
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_STRING *v = i < sp->ndns ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
    int ok = g && v;
    if (ok && i < sp->ndns) ok = ASN1_STRING_set(v, sp->dns[i], -1);
    else if (ok) ok = ASN1_STRING_set(v, sp->ip[i - sp->ndns], sp->iplen[i - sp->ndns]);
    if (ok) {
      GENERAL_NAME_set0_value(g, i < sp->ndns ? GEN_DNS : GEN_IPADD, v);
      v = NULL;
      ok = sk_GENERAL_NAME_push(gens, g) > 0;
    }
    if (!ok) {
      ASN1_STRING_free(v);
      GENERAL_NAME_free(g);
      GENERAL_NAMES_free(gens);
      return NULL;
    }
  }
  return gens;
}

/* Adds BC, KU, EKU, SAN, SKID and AKID to x; returns 1 or 0 (OpenSSL error set). */
static int x509_add_extensions(X509 *x, const x509_spec *sp, X509 *issuer) {
  int ok = 1;
  BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
  if (!bc) return 0;
  bc->ca = sp->is_ca ? 0xFF : 0;
  if (sp->is_ca && sp->path_len >= 0) {
    bc->pathlen = ASN1_INTEGER_new();
    ok = bc->pathlen && ASN1_INTEGER_set(bc->pathlen, sp->path_len);
  }
  ok = ok && X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) == 1;
  BASIC_CONSTRAINTS_free(bc);
  if (ok && sp->ku) {
    ASN1_BIT_STRING *bits = ASN1_BIT_STRING_new();
    ok = bits != NULL;
    for (int i = 0; ok && i < X509_NKU; i++)
      if (sp->ku & (1u << i)) ok = ASN1_BIT_STRING_set_bit(bits, i, 1);
    ok = ok && X509_add1_ext_i2d(x, NID_key_usage, bits, 1, X509V3_ADD_DEFAULT) == 1;
    ASN1_BIT_STRING_free(bits);
  }
  if (ok && sp->neku) {
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    ok = eku != NULL;
    for (int i = 0; ok && i < sp->neku; i++)
      ok = sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(sp->eku[i])) > 0;
    ok = ok && X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) == 1;
    sk_ASN1_OBJECT_free(eku);  /* the objects are OpenSSL's static ones */
  }
  if (ok && sp->ndns + sp->nip) {
    GENERAL_NAMES *gens = x509_build_sans(sp);
    /* RFC 5280 4.2.1.6: critical when the subject is empty */
    ok = gens && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, sp->nrdn == 0,
                                   X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
  }
  if (ok) {  /* subject key id: SHA-1 of the public key bits (RFC 5280 method 1) */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    ASN1_OCTET_STRING *skid = ASN1_OCTET_STRING_new();
    ok = skid && X509_pubkey_digest(x, EVP_sha1(), md, &n) &&
         ASN1_OCTET_STRING_set(skid, md, (int)n) &&
         X509_add1_ext_i2d(x, NID_subject_key_identifier, skid, 0, X509V3_ADD_DEFAULT) == 1;
    ASN1_OCTET_STRING_free(skid);
  }
  const ASN1_OCTET_STRING *issuer_skid = issuer ? X509_get0_subject_key_id(issuer) : NULL;
  if (ok && issuer_skid) {
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    ok = akid && (akid->keyid = ASN1_OCTET_STRING_dup(issuer_skid)) != NULL &&
         X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) == 1;
    AUTHORITY_KEYID_free(akid);
  }
  return ok;
}

/* Sets x's 128-bit random positive serial. */
static int x509_set_serial(X509 *x) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return 0;
  BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
  if (bn && BN_is_zero(bn)) BN_one(bn);
  ASN1_INTEGER *serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
  int ok = serial && X509_set_serialNumber(x, serial);
  ASN1_INTEGER_free(serial);
  BN_free(bn);
  return ok;
}

/* Fills and signs x; returns NULL or the step that failed (OpenSSL error set). */
static const char *x509_build_cert(X509 *x, const x509_spec *sp, EVP_PKEY *pub, X509 *issuer,
                                   EVP_PKEY *signer) {
  X509_NAME *subject = x509_build_name(sp);
  int ok = subject && X509_set_subject_name(x, subject) &&
           X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subject);
  X509_NAME_free(subject);
  if (!ok) return "building the subject";
  if (!X509_set_version(x, X509_VERSION_3) || !x509_set_serial(x) ||
      !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)sp->not_before) ||
      !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)sp->not_after) || !X509_set_pubkey(x, pub))
    return "building the certificate";
  if (!x509_add_extensions(x, sp, issuer)) return "adding extensions";
  if (X509_sign(x, signer, crypto_key_md(signer)) <= 0) return "signing the certificate";
  return NULL;
}

/* Pushes the memory BIO's contents. */
static void x509_push_bio(lua_State *L, BIO *bio) {
  char *data;
  long n = BIO_get_mem_data(bio, &data);
  lua_pushlstring(L, data, (size_t)n);
}

/*
** create_cert(spec) -> PEM | nil, msg, "EINVAL" | "ECRYPTO"
** spec: signer (Key, private), public_key (Key), issuer (PEM of the signing
** CA; absent: self-signed), subject {{attr, value}...}, dns_names,
** ip_addresses, key_usage, ext_key_usage, is_ca, path_len, not_before,
** not_after (unix seconds).  EINVAL: a bad IP address, an issuer PEM without
** a certificate, or a signer that does not match the issuer.
*/
static int x509_create_cert(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  x509_spec sp;
  crypto_key *signer = x509_getkey(L, 1, "signer");
  crypto_key *pub = x509_getkey(L, 1, "public_key");
  size_t issuer_len = 0;
  const char *issuer_pem = tlr_optstring(L, 1, "issuer", NULL, &issuer_len);
  if (!signer->priv) luaL_error(L, "spec.signer: a private key is needed to sign");
  x509_read_names(L, 1, &sp);
  x509_read_usage(L, 1, &sp);
  if (sp.bad_ip) return tlr_fail(L, "EINVAL", "invalid IP address '%s'", sp.bad_ip);
  crypto_scratch *s = crypto_scratch_new(L);
  if (issuer_pem) {
    if (!(s->bio = BIO_new_mem_buf(issuer_pem, (int)issuer_len)))
      return crypto_fail(L, s, "ECRYPTO", "create_cert");
    if (!(s->issuer = PEM_read_bio_X509(s->bio, NULL, NULL, NULL)))
      return crypto_fail(L, s, "EINVAL", "issuer certificate");
    if (X509_check_private_key(s->issuer, signer->pkey) != 1)
      return crypto_fail(L, s, "EINVAL", "the signing key does not match the issuer certificate");
  }
  if (!(s->cert = X509_new())) return crypto_fail(L, s, "ECRYPTO", "create_cert");
  const char *failed = x509_build_cert(s->cert, &sp, pub->pkey, s->issuer, signer->pkey);
  if (failed) return crypto_fail(L, s, "ECRYPTO", failed);
  BIO_free(s->bio);
  if (!(s->bio = BIO_new(BIO_s_mem())) || !PEM_write_bio_X509(s->bio, s->cert))
    return crypto_fail(L, s, "ECRYPTO", "writing PEM");
  x509_push_bio(L, s->bio);
  crypto_scratch_free(s);
  return 1;
}

/*
** create_csr(spec) -> PEM | nil, msg, "EINVAL" | "ECRYPTO"
** spec: key (Key, private), subject, dns_names, ip_addresses.
*/
static int x509_create_csr(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  x509_spec sp;
  crypto_key *key = x509_getkey(L, 1, "key");
  if (!key->priv) luaL_error(L, "spec.key: a private key is needed to sign");
  x509_read_names(L, 1, &sp);
  if (sp.bad_ip) return tlr_fail(L, "EINVAL", "invalid IP address '%s'", sp.bad_ip);
  crypto_scratch *s = crypto_scratch_new(L);
  X509_NAME *subject = x509_build_name(&sp);
  int ok = (s->req = X509_REQ_new()) && subject && X509_REQ_set_subject_name(s->req, subject) &&
           X509_REQ_set_version(s->req, X509_REQ_VERSION_1) &&
           X509_REQ_set_pubkey(s->req, key->pkey);
  X509_NAME_free(subject);
  if (ok && sp.ndns + sp.nip) {
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *gens = x509_build_sans(&sp);
    ok = gens && X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, sp.nrdn == 0,
                                 X509V3_ADD_DEFAULT) == 1 &&
         X509_REQ_add_extensions(s->req, exts);
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  if (!ok || X509_REQ_sign(s->req, key->pkey, crypto_key_md(key->pkey)) <= 0)
    return crypto_fail(L, s, "ECRYPTO", "create_csr");
  if (!(s->bio = BIO_new(BIO_s_mem())) || !PEM_write_bio_X509_REQ(s->bio, s->req))
    return crypto_fail(L, s, "ECRYPTO", "writing PEM");
  x509_push_bio(L, s->bio);
  crypto_scratch_free(s);
  return 1;
}

/* ========== parsing (objects held in the scratch while pushing) ========== */

/*
** Pushes a name as {CN="x", O="a"} (a list when an attribute repeats) and
** sets t[field .. "_text"] to its RFC 2253 form.  [t] -> [t]
*/
static void x509_push_name(lua_State *L, crypto_scratch *s, const X509_NAME *name,
                           const char *field) {
  lua_newtable(L);
  for (int i = 0; i < X509_NAME_entry_count(name); i++) {
    const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
    const char *sn = OBJ_nid2sn(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)));
    int n = ASN1_STRING_to_UTF8(&s->mem, X509_NAME_ENTRY_get_data(e));
    if (n < 0) continue;
    int type = lua_getfield(L, -1, sn);  /* [t, name, old] */
    if (type == LUA_TSTRING) {
      lua_createtable(L, 2, 0);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
    }
    if (type == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, (const char *)s->mem, (size_t)n);
      lua_setfield(L, -2, sn);
    } else {
      lua_pushlstring(L, (const char *)s->mem, (size_t)n);
      lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
      lua_setfield(L, -2, sn);
    }
    OPENSSL_free(s->mem);
    s->mem = NULL;
  }
  lua_setfield(L, -2, field);
  BIO_free(s->bio);
  if ((s->bio = BIO_new(BIO_s_mem())) &&
      X509_NAME_print_ex(s->bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
    char key[32];
    snprintf(key, sizeof key, "%s_text", field);
    x509_push_bio(L, s->bio);
    lua_setfield(L, -2, key);
  }
  ERR_clear_error();
}

/* Sets t.dns_names and t.ip_addresses from s->names (may be NULL). [t] -> [t] */
static void x509_push_sans(lua_State *L, crypto_scratch *s) {
  int ndns = 0, nip = 0;
  lua_newtable(L);
  lua_newtable(L);  /* [t, dns, ips] */
  for (int i = 0; s->names && i < sk_GENERAL_NAME_num(s->names); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(s->names, i);
    int type;
    const ASN1_STRING *v = GENERAL_NAME_get0_value(g, &type);
    if (type == GEN_DNS) {
      lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
      lua_rawseti(L, -3, ++ndns);
    } else if (type == GEN_IPADD) {
      char text[INET6_ADDRSTRLEN];
      int len = ASN1_STRING_length(v);
      int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (af && inet_ntop(af, ASN1_STRING_get0_data(v), text, sizeof text)) {
        lua_pushstring(L, text);
        lua_rawseti(L, -2, ++nip);
      }
    }
  }
  lua_setfield(L, -3, "ip_addresses");
  lua_setfield(L, -2, "dns_names");
}

/* Sets the key_* fields and public_key (PEM) of t for pk.  [t] -> [t] */
static void x509_push_pubkey(lua_State *L, crypto_scratch *s, EVP_PKEY *pk) {
  const char *kind = crypto_key_kind(pk), *curve = crypto_key_curve(pk);
  lua_pushstring(L, kind ? kind : OBJ_nid2sn(EVP_PKEY_get_base_id(pk)));
  lua_setfield(L, -2, "key_type");
  lua_pushinteger(L, EVP_PKEY_get_bits(pk));
  lua_setfield(L, -2, "key_bits");
  if (curve) {
    lua_pushstring(L, curve);
    lua_setfield(L, -2, "key_curve");
  }
  BIO_free(s->bio);
  if ((s->bio = BIO_new(BIO_s_mem())) && PEM_write_bio_PUBKEY(s->bio, pk)) {
    x509_push_bio(L, s->bio);
    lua_setfield(L, -2, "public_key");
  }
  ERR_clear_error();
}

/* Sets t[field] to the lowercase hex of the octets (when present).  [t] -> [t] */
static void x509_push_hex(lua_State *L, const char *field, const unsigned char *p, int n,
                          const char *sep, int upper) {
  if (!p) return;
  const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < n; i++) {
    if (i && sep) luaL_addstring(&b, sep);
    luaL_addchar(&b, digits[p[i] >> 4]);
    luaL_addchar(&b, digits[p[i] & 15]);
  }
  luaL_pushresult(&b);
  lua_setfield(L, -2, field);
}

static void x509_push_time(lua_State *L, const char *field, const ASN1_TIME *t) {
  struct tm tm;
  if (!t || !ASN1_TIME_to_tm(t, &tm)) return;
  lua_pushinteger(L, (lua_Integer)timegm(&tm));
  lua_setfield(L, -2, field);
}

/* Sets is_ca, path_len, key_usage and ext_key_usage.  [t] -> [t] */
static void x509_push_usage(lua_State *L, X509 *x) {
  int crit = 0, n = 0, is_ca = 0;
  long path_len = -1;
  BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
  if (bc) {
    is_ca = bc->ca != 0;
    if (bc->pathlen) path_len = ASN1_INTEGER_get(bc->pathlen);
    BASIC_CONSTRAINTS_free(bc);
  }
  lua_pushboolean(L, is_ca);
  lua_setfield(L, -2, "is_ca");
  if (is_ca && path_len >= 0) {
    lua_pushinteger(L, path_len);
    lua_setfield(L, -2, "path_len");
  }
  uint32_t ku = X509_get_key_usage(x);  /* UINT32_MAX when absent */
  lua_newtable(L);
  for (int i = 0; ku != UINT32_MAX && i < X509_NKU; i++) {
    if (!(ku & x509_key_usages[i].flag)) continue;
    lua_pushstring(L, x509_key_usages[i].name);
    lua_rawseti(L, -2, ++n);
  }
  lua_setfield(L, -2, "key_usage");
  /* EKU: collect NIDs first so no OpenSSL object is held while pushing */
  int nids[X509_MAX_EKU], neku = 0;
  char oids[X509_MAX_EKU][64];
  EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
  for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku) && neku < X509_MAX_EKU; i++, neku++) {
    const ASN1_OBJECT *obj = sk_ASN1_OBJECT_value(eku, i);
    nids[neku] = OBJ_obj2nid(obj);
    OBJ_obj2txt(oids[neku], sizeof oids[neku], obj, 1);
  }
  sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
  lua_createtable(L, neku, 0);
  for (int i = 0; i < neku; i++) {
    int k = 0;
    while (k < X509_NEKU && x509_ext_key_usages[k].nid != nids[i]) k++;
    lua_pushstring(L, k < X509_NEKU ? x509_ext_key_usages[k].name : oids[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "ext_key_usage");
}

/*
** parse_cert(pem) -> table | nil, msg, "EINVAL"
** Parses the first CERTIFICATE block (see crypto.parse_cert for the fields).
*/
static int x509_parse_cert(lua_State *L) {
  size_t len;
  const char *pem = luaL_checklstring(L, 1, &len);
  crypto_scratch *s = crypto_scratch_new(L);
  if (!(s->bio = BIO_new_mem_buf(pem, (int)len))) return crypto_fail(L, s, "ECRYPTO", "parse_cert");
  if (!(s->cert = PEM_read_bio_X509(s->bio, NULL, NULL, NULL)))
    return crypto_fail(L, s, "EINVAL", "parse_cert: no readable CERTIFICATE block");
  X509 *x = s->cert;
  lua_newtable(L);
  lua_pushinteger(L, X509_get_version(x) + 1);
  lua_setfield(L, -2, "version");
  x509_push_name(L, s, X509_get_subject_name(x), "subject");
  x509_push_name(L, s, X509_get_issuer_name(x), "issuer");
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  int nbytes = bn ? BN_num_bytes(bn) : 0;
  unsigned char serial[64] = {0};
  if (bn && nbytes <= (int)sizeof serial) {
    BN_bn2bin(bn, serial);
    x509_push_hex(L, "serial", serial, nbytes ? nbytes : 1, NULL, 0);
  }
  BN_free(bn);
  x509_push_time(L, "not_before", X509_get0_notBefore(x));
  x509_push_time(L, "not_after", X509_get0_notAfter(x));
  s->names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  x509_push_sans(L, s);
  x509_push_usage(L, x);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(x, EVP_sha256(), md, &n))
    x509_push_hex(L, "fingerprint_sha256", md, (int)n, ":", 1);
  const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
  const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
  if (skid)
    x509_push_hex(L, "subject_key_id", ASN1_STRING_get0_data(skid), ASN1_STRING_length(skid),
                  NULL, 0);
  if (akid)
    x509_push_hex(L, "authority_key_id", ASN1_STRING_get0_data(akid), ASN1_STRING_length(akid),
                  NULL, 0);
  lua_pushstring(L, OBJ_nid2ln(X509_get_signature_nid(x)));
  lua_setfield(L, -2, "signature_algorithm");
  lua_pushboolean(L, X509_self_signed(x, 1) == 1);
  lua_setfield(L, -2, "self_signed");
  EVP_PKEY *pk = X509_get0_pubkey(x);
  if (pk) x509_push_pubkey(L, s, pk);
  ERR_clear_error();
  crypto_scratch_free(s);
  return 1;
}

/*
** parse_csr(pem) -> {subject=, subject_text=, dns_names=, ip_addresses=,
** key_type=, key_bits=, key_curve=, public_key=, signature_valid=}
** | nil, msg, "EINVAL"
*/
static int x509_parse_csr(lua_State *L) {
  size_t len;
  const char *pem = luaL_checklstring(L, 1, &len);
  crypto_scratch *s = crypto_scratch_new(L);
  if (!(s->bio = BIO_new_mem_buf(pem, (int)len))) return crypto_fail(L, s, "ECRYPTO", "parse_csr");
  if (!(s->req = PEM_read_bio_X509_REQ(s->bio, NULL, NULL, NULL)))
    return crypto_fail(L, s, "EINVAL", "parse_csr: no readable CERTIFICATE REQUEST block");
  EVP_PKEY *pk = X509_REQ_get0_pubkey(s->req);
  if (!pk) return crypto_fail(L, s, "EINVAL", "parse_csr: no public key");
  STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(s->req);
  s->names = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  int valid = X509_REQ_verify(s->req, pk) == 1;
  ERR_clear_error();
  lua_newtable(L);
  x509_push_name(L, s, X509_REQ_get_subject_name(s->req), "subject");
  x509_push_sans(L, s);
  x509_push_pubkey(L, s, pk);
  lua_pushboolean(L, valid);
  lua_setfield(L, -2, "signature_valid");
  crypto_scratch_free(s);
  return 1;
}

/* ========== chain verification ========== */

/* Checks that the argument is a list of strings; returns its length. */
static int x509_checkpems(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)luaL_len(L, idx);
  for (int i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
      luaL_argerror(L, idx, "list of PEM strings expected");
    lua_pop(L, 1);
  }
  return n;
}

/*
** Reads every certificate of the PEM strings list[1..n] into store (when
** not NULL) or the chain stack.  Returns 0, or the 1-based index of an entry
** that holds no certificate.  No Lua call can raise here: the entries were
** checked to be strings.
*/
static int x509_load_pems(lua_State *L, int idx, int n, X509_STORE *store, STACK_OF(X509) *chain) {
  for (int i = 1; i <= n; i++) {
    size_t len;
    lua_rawgeti(L, idx, i);
    const char *pem = lua_tolstring(L, -1, &len);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    lua_pop(L, 1);  /* idx still references the string */
    int count = 0;
    X509 *x;
    while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
      int ok = store ? X509_STORE_add_cert(store, x) : sk_X509_push(chain, x) > 0;
      if (store || !ok) X509_free(x);
      count += ok;
    }
    ERR_clear_error();
    BIO_free(bio);
    if (count == 0) return i;
  }
  return 0;
}

/*
** verify_chain(leaf_pem, ca_pems, untrusted_pems, at, purpose, host)
**   -> true | nil, reason, "ECRYPTO" | nil, msg, "EINVAL"
** ca_pems are the trust anchors; untrusted_pems intermediates (may be nil);
** at: unix time to verify at (nil: now); purpose "server" | "client" | nil;
** host: a DNS name or IP the leaf must be valid for (nil: any).
*/
static int x509_verify_chain(lua_State *L) {
  static const char *const purposes[] = {"server", "client", NULL};
  size_t len;
  const char *leaf = luaL_checklstring(L, 1, &len);
  int ncas = x509_checkpems(L, 2);
  int nuntrusted = x509_checkpems(L, 3);
  int has_at = !lua_isnoneornil(L, 4);
  lua_Integer at = luaL_optinteger(L, 4, 0);
  int purpose = lua_isnoneornil(L, 5) ? -1 : luaL_checkoption(L, 5, NULL, purposes);
  const char *host = luaL_optstring(L, 6, NULL);
  unsigned char ipbuf[16];
  int is_ip = host && (inet_pton(AF_INET, host, ipbuf) == 1 ||
                       inet_pton(AF_INET6, host, ipbuf) == 1);
  crypto_scratch *s = crypto_scratch_new(L);
  if (!(s->bio = BIO_new_mem_buf(leaf, (int)len)))
    return crypto_fail(L, s, "ECRYPTO", "verify_chain");
  if (!(s->cert = PEM_read_bio_X509(s->bio, NULL, NULL, NULL)))
    return crypto_fail(L, s, "EINVAL", "verify_chain: the leaf has no readable CERTIFICATE block");
  if (!(s->store = X509_STORE_new()) || !(s->chain = sk_X509_new_null()) ||
      !(s->sctx = X509_STORE_CTX_new()))
    return crypto_fail(L, s, "ECRYPTO", "verify_chain");
  int bad = x509_load_pems(L, 2, ncas, s->store, NULL);
  if (!bad) bad = -x509_load_pems(L, 3, nuntrusted, NULL, s->chain);
  if (bad) {
    crypto_scratch_free(s);
    return tlr_fail(L, "EINVAL", "verify_chain: %s[%d] holds no readable certificate",
                    bad > 0 ? "cas" : "untrusted", bad > 0 ? bad : -bad);
  }
  if (!X509_STORE_CTX_init(s->sctx, s->store, s->cert, s->chain))
    return crypto_fail(L, s, "ECRYPTO", "verify_chain");
  X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(s->sctx);
  if (has_at) X509_VERIFY_PARAM_set_time(param, (time_t)at);
  if (purpose >= 0)
    X509_STORE_CTX_set_purpose(s->sctx,
                               purpose == 0 ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT);
  if (host && is_ip) X509_VERIFY_PARAM_set1_ip_asc(param, host);
  else if (host) X509_VERIFY_PARAM_set1_host(param, host, 0);
  if (X509_verify_cert(s->sctx) == 1) {
    crypto_scratch_free(s);
    lua_pushboolean(L, 1);
    return 1;
  }
  int err = X509_STORE_CTX_get_error(s->sctx);
  int depth = X509_STORE_CTX_get_error_depth(s->sctx);
  X509 *cur = X509_STORE_CTX_get_current_cert(s->sctx);
  char who[256] = "?";
  if (cur) X509_NAME_oneline(X509_get_subject_name(cur), who, sizeof who);
  ERR_clear_error();
  crypto_scratch_free(s);
  return tlr_fail(L, "ECRYPTO", "%s (depth %d, subject '%s')", X509_verify_cert_error_string(err),
                  depth, who);
}

/* ========== registration ========== */

static const luaL_Reg x509_funcs[] = {
  {"create_cert", x509_create_cert},
  {"create_csr", x509_create_csr},
  {"parse_cert", x509_parse_cert},
  {"parse_csr", x509_parse_csr},
  {"verify_chain", x509_verify_chain},
  {NULL, NULL}};

int luaopen_tlr_x509_core(lua_State *L) {
  luaL_newlib(L, x509_funcs);
  return 1;
}
