/*
** crypto.c: tlr.crypto.core, the primitives under lua/tlr/crypto.lua:
** random bytes, digests and HMAC, base64 and hex, and keys (the
** tlr.crypto.Key userdata): generation (RSA on the worker pool), PEM in the
** labels Talos and Kubernetes use, signatures.  Certificates live in x509.c.
** OpenSSL 3 EVP/encoder/decoder APIs only.
*/
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "crypto.h"

#define HASH_MT "tlr.crypto.Hash"
#define RANDOM_MAX (1 << 20)

/* ========== digests ========== */

static const EVP_MD *crypto_md_byname(const char *name) {
  if (strcmp(name, "sha256") == 0) return EVP_sha256();
  if (strcmp(name, "sha512") == 0) return EVP_sha512();
  if (strcmp(name, "sha384") == 0) return EVP_sha384();
  if (strcmp(name, "sha1") == 0) return EVP_sha1();
  if (strcmp(name, "md5") == 0) return EVP_md5();
  return NULL;
}

static const EVP_MD *crypto_checkmd(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  const EVP_MD *md = crypto_md_byname(name);
  if (!md) luaL_argerror(L, idx, lua_pushfstring(L, "unknown digest '%s'", name));
  return md;
}

/* random(n) -> n random bytes | nil, msg, "ECRYPTO" */
static int crypto_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= RANDOM_MAX, 1, "byte count out of range");
  luaL_Buffer b;
  unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
  if (n > 0 && RAND_bytes(p, (int)n) != 1) {
    char reason[256];
    crypto_errmsg(reason, sizeof reason);
    return tlr_fail(L, "ECRYPTO", "random: %s", reason);
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* digest(alg, data) -> raw digest | nil, msg, "ECRYPTO"; alg: sha256 sha512 sha384 sha1 md5 */
static int crypto_digest(lua_State *L) {
  const EVP_MD *md = crypto_checkmd(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(data, len, out, &n, md, NULL) != 1) {
    char reason[256];
    crypto_errmsg(reason, sizeof reason);
    return tlr_fail(L, "ECRYPTO", "digest: %s", reason);
  }
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

/* hmac(alg, key, data) -> raw MAC | nil, msg, "ECRYPTO" */
static int crypto_hmac(lua_State *L) {
  const char *alg = EVP_MD_get0_name(crypto_checkmd(L, 1));
  size_t keylen, len;
  const char *key = luaL_checklstring(L, 2, &keylen);
  const char *data = luaL_checklstring(L, 3, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t n = 0;
  OSSL_PARAM params[] = {
    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)alg, 0),
    OSSL_PARAM_construct_end()};
  crypto_scratch *s = crypto_scratch_new(L);
  s->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  if (!s->mac || !(s->macctx = EVP_MAC_CTX_new(s->mac)))
    return crypto_fail(L, s, "ECRYPTO", "hmac");
  /* an empty key is legal HMAC; OpenSSL wants a non-NULL pointer for it */
  if (!EVP_MAC_init(s->macctx, (const unsigned char *)(keylen ? key : ""), keylen, params) ||
      !EVP_MAC_update(s->macctx, (const unsigned char *)data, len) ||
      !EVP_MAC_final(s->macctx, out, &n, sizeof out))
    return crypto_fail(L, s, "ECRYPTO", "hmac");
  crypto_scratch_free(s);
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

/* equal(a, b) -> boolean, compared in constant time for equal lengths */
static int crypto_equal(lua_State *L) {
  size_t la, lb;
  const char *a = luaL_checklstring(L, 1, &la);
  const char *b = luaL_checklstring(L, 2, &lb);
  lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
  return 1;
}

/* ========== streaming hash (tlr.crypto.Hash) ========== */

typedef struct crypto_hash {
  EVP_MD_CTX *ctx;
} crypto_hash;

static crypto_hash *crypto_hash_check(lua_State *L) {
  crypto_hash *h = luaL_checkudata(L, 1, HASH_MT);
  if (!h->ctx) luaL_error(L, "attempt to use a closed hash");
  return h;
}

/* hash(alg) -> Hash | nil, msg, "ECRYPTO" */
static int crypto_hash_new(lua_State *L) {
  const EVP_MD *md = crypto_checkmd(L, 1);
  crypto_hash *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->ctx = NULL;
  luaL_setmetatable(L, HASH_MT);
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || EVP_DigestInit_ex(h->ctx, md, NULL) != 1) {
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    char reason[256];
    crypto_errmsg(reason, sizeof reason);
    return tlr_fail(L, "ECRYPTO", "hash: %s", reason);
  }
  return 1;
}

/* hash:update(data) -> hash (raises when closed) */
static int crypto_hash_update(lua_State *L) {
  crypto_hash *h = crypto_hash_check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (EVP_DigestUpdate(h->ctx, data, len) != 1) return luaL_error(L, "hash update failed");
  lua_settop(L, 1);
  return 1;
}

/* hash:close(): idempotent, also __gc and __close */
static int crypto_hash_close(lua_State *L) {
  crypto_hash *h = luaL_checkudata(L, 1, HASH_MT);
  EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
  return 0;
}

/* hash:digest() -> raw digest; closes the hash */
static int crypto_hash_digest(lua_State *L) {
  crypto_hash *h = crypto_hash_check(L);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  int ok = EVP_DigestFinal_ex(h->ctx, out, &n);
  crypto_hash_close(L);
  if (ok != 1) return luaL_error(L, "hash final failed");
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

/* ========== base64 and hex ========== */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64_encode(s, url) -> text; url: URL alphabet, no padding */
static int crypto_base64_encode(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  int url = lua_toboolean(L, 2);
  const char *abc = url ? b64_url : b64_std;
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, (len + 2) / 3 * 4);
  size_t o = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    out[o++] = abc[(v >> 6) & 63];
    out[o++] = abc[v & 63];
  }
  if (i < len) {
    unsigned v = (unsigned)s[i] << 16 | (i + 1 < len ? (unsigned)s[i + 1] << 8 : 0);
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    if (i + 1 < len) out[o++] = abc[(v >> 6) & 63];
    else if (!url) out[o++] = '=';
    if (!url) out[o++] = '=';
  }
  luaL_pushresultsize(&b, o);
  return 1;
}

static int b64_value(int c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

/*
** base64_decode(s, url) -> bytes | nil, msg, "EINVAL"
** Line breaks are ignored (as Go does).  The standard alphabet requires the
** '=' padding; the URL alphabet takes it or leaves it.
*/
static int crypto_base64_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int url = lua_toboolean(L, 2);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len / 4 * 3 + 3);
  size_t o = 0, n = 0, pad = 0, pos = 0;
  unsigned v = 0;
  for (; pos < len; pos++) {
    int c = (unsigned char)s[pos];
    if (c == '\r' || c == '\n') continue;
    if (c == '=') {
      pad++;
      continue;
    }
    int d = b64_value(c, url);
    if (d < 0 || pad) break;
    v = v << 6 | (unsigned)d;
    if (++n % 4 == 0) {
      out[o++] = (char)(v >> 16);
      out[o++] = (char)(v >> 8);
      out[o++] = (char)v;
      v = 0;
    }
  }
  size_t rest = n % 4;
  if (pos < len)
    return tlr_fail(L, "EINVAL", "base64: invalid character at offset %d", (int)pos);
  if (rest == 1 || pad > 2 || (pad && pad != 4 - rest) || (!url && rest && !pad))
    return tlr_fail(L, "EINVAL", "base64: truncated or badly padded input");
  if (rest == 2) out[o++] = (char)(v >> 4);
  if (rest == 3) {
    out[o++] = (char)(v >> 10);
    out[o++] = (char)(v >> 2);
  }
  luaL_pushresultsize(&b, o);
  return 1;
}

/* hex_encode(s) -> lowercase hex */
static int crypto_hex_encode(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  static const char digits[] = "0123456789abcdef";
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len * 2);
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[s[i] >> 4];
    out[2 * i + 1] = digits[s[i] & 15];
  }
  luaL_pushresultsize(&b, len * 2);
  return 1;
}

static int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* hex_decode(s) -> bytes | nil, msg, "EINVAL" (either case, even length) */
static int crypto_hex_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (len % 2) return tlr_fail(L, "EINVAL", "hex: odd number of digits");
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len / 2);
  for (size_t i = 0; i < len; i += 2) {
    int hi = hex_value((unsigned char)s[i]), lo = hex_value((unsigned char)s[i + 1]);
    if (hi < 0 || lo < 0)
      return tlr_fail(L, "EINVAL", "hex: invalid digit at offset %d", (int)(hi < 0 ? i : i + 1));
    out[i / 2] = (char)(hi << 4 | lo);
  }
  luaL_pushresultsize(&b, len / 2);
  return 1;
}

/* ========== keys (tlr.crypto.Key) ========== */

/* Pushes a closed Key; the caller moves an EVP_PKEY into it. */
static crypto_key *crypto_key_new(lua_State *L) {
  crypto_key *k = lua_newuserdatauv(L, sizeof *k, 0);
  k->pkey = NULL;
  k->priv = 0;
  luaL_setmetatable(L, CRYPTO_KEY_MT);
  return k;
}

/* key:close(): idempotent, also __gc and __close */
static int crypto_key_close(lua_State *L) {
  crypto_key *k = luaL_checkudata(L, 1, CRYPTO_KEY_MT);
  EVP_PKEY_free(k->pkey);
  k->pkey = NULL;
  return 0;
}

/*
** generate_key(kind, curve) -> Key | nil, msg, "ECRYPTO"
** kind "ed25519" or "ecdsa" (curve "P-256", "P-384", "P-521"); RSA goes
** through rsa_job so it runs on the worker pool.
*/
static int crypto_generate_key(lua_State *L) {
  static const char *const kinds[] = {"ed25519", "ecdsa", NULL};
  static const char *const curves[] = {"P-256", "P-384", "P-521", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  int curve = luaL_checkoption(L, 2, "P-256", curves);
  crypto_key *k = crypto_key_new(L);
  if (kind == 0) k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  else k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curves[curve]);
  if (!k->pkey) {
    char reason[256];
    crypto_errmsg(reason, sizeof reason);
    return tlr_fail(L, "ECRYPTO", "%s key generation failed: %s", kinds[kind], reason);
  }
  k->priv = 1;
  return 1;
}

/* The worker-pool job behind rsa_job: work() runs on a worker thread. */
typedef struct rsa_job {
  int bits;
  int taken;
  EVP_PKEY *pkey;
  char err[256];
} rsa_job;

static void rsa_job_work(void *ctx) {
  rsa_job *j = ctx;
  j->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)j->bits);
  if (!j->pkey) crypto_errmsg(j->err, sizeof j->err);
}

/* Main thread: moves the key into a new Key. */
static int rsa_job_push(lua_State *L, void *ctx) {
  rsa_job *j = ctx;
  if (j->taken) return luaL_error(L, "the key of this job was taken already");
  crypto_key *k = crypto_key_new(L);
  j->taken = 1;
  if (!j->pkey) return tlr_fail(L, "ECRYPTO", "RSA-%d key generation failed: %s", j->bits, j->err);
  k->pkey = j->pkey;
  k->priv = 1;
  j->pkey = NULL;
  return 1;
}

static void rsa_job_free(void *ctx) {
  rsa_job *j = ctx;
  EVP_PKEY_free(j->pkey);
  free(j);
}

static const tlr_job_class rsa_job_class = {"rsa keygen", rsa_job_work, rsa_job_push,
                                            rsa_job_free};

/* rsa_job(bits) -> Job whose result() is Key | nil, msg, "ECRYPTO" */
static int crypto_rsa_job(lua_State *L) {
  lua_Integer bits = luaL_checkinteger(L, 1);
  luaL_argcheck(L, bits >= 2048 && bits <= 8192 && bits % 8 == 0, 1,
                "RSA bits must be a multiple of 8 in 2048..8192");
  rsa_job *j = calloc(1, sizeof *j);
  if (!j) return luaL_error(L, "out of memory");
  j->bits = (int)bits;
  tlr_job_push(L, &rsa_job_class, j);
  return 1;
}

/* PEM labels of private keys: the DER structure and key type each implies. */
static const struct {
  const char *label, *structure, *keytype;
} key_labels[] = {
  {"PRIVATE KEY", "PrivateKeyInfo", NULL},
  {"ED25519 PRIVATE KEY", "PrivateKeyInfo", "ED25519"},  /* Talos: PKCS#8 DER */
  {"EC PRIVATE KEY", "type-specific", "EC"},              /* SEC1 */
  {"RSA PRIVATE KEY", "type-specific", "RSA"},            /* PKCS#1 */
  {"PUBLIC KEY", "SubjectPublicKeyInfo", NULL},
};

/*
** load_key(pem) -> Key | nil, msg, "EINVAL"
** Takes the first PEM block that is not "EC PARAMETERS" (openssl ecparam
** writes one first).  Labels: PRIVATE KEY, ED25519 PRIVATE KEY, EC PRIVATE
** KEY, RSA PRIVATE KEY, PUBLIC KEY; the DER must match the label and be an
** Ed25519, ECDSA or RSA key.
*/
static int crypto_load_key(lua_State *L) {
  size_t len;
  const char *pem = luaL_checklstring(L, 1, &len);
  char label[64] = "";
  crypto_key *k = crypto_key_new(L);
  crypto_scratch *s = crypto_scratch_new(L);
  char *name = NULL, *header = NULL;
  unsigned char *der = NULL;
  long derlen = 0;
  s->bio = BIO_new_mem_buf(pem, (int)len);
  if (!s->bio) return crypto_fail(L, s, "ECRYPTO", "load_key");
  for (;;) {
    if (!PEM_read_bio(s->bio, &name, &header, &der, &derlen)) {
      ERR_clear_error();
      crypto_scratch_free(s);
      return tlr_fail(L, "EINVAL", "load_key: no readable PEM block");
    }
    snprintf(label, sizeof label, "%s", name);
    OPENSSL_free(name);
    OPENSSL_free(header);
    s->mem = der;
    if (strcmp(label, "EC PARAMETERS") != 0) break;
    OPENSSL_free(der);
    s->mem = NULL;
  }
  size_t i = 0, nlabels = sizeof key_labels / sizeof key_labels[0];
  while (i < nlabels && strcmp(key_labels[i].label, label) != 0) i++;
  if (i == nlabels) {
    crypto_scratch_free(s);
    return tlr_fail(L, "EINVAL", "load_key: unsupported PEM label '%s'", label);
  }
  int pub = strcmp(label, "PUBLIC KEY") == 0;
  const unsigned char *p = der;
  size_t left = (size_t)derlen;
  s->dec = OSSL_DECODER_CTX_new_for_pkey(&s->pkey, "DER", key_labels[i].structure,
                                         key_labels[i].keytype,
                                         pub ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEYPAIR, NULL, NULL);
  if (!s->dec || !OSSL_DECODER_from_data(s->dec, &p, &left) || left != 0 || !s->pkey ||
      !crypto_key_kind(s->pkey)) {
    ERR_clear_error();
    crypto_scratch_free(s);
    return tlr_fail(L, "EINVAL", "load_key: '%s' block does not hold a supported key", label);
  }
  k->pkey = s->pkey;
  k->priv = !pub;
  s->pkey = NULL;
  crypto_scratch_free(s);
  lua_pop(L, 1);  /* [key] */
  return 1;
}

/*
** Encodes the key as PEM under `label` with the DER `structure`
** (PrivateKeyInfo, type-specific, SubjectPublicKeyInfo) and pushes it.
*/
static int crypto_key_encode(lua_State *L, EVP_PKEY *pk, int selection, const char *structure,
                             const char *label) {
  crypto_scratch *s = crypto_scratch_new(L);
  unsigned char *der = NULL;
  size_t derlen = 0;
  char *data;
  s->enc = OSSL_ENCODER_CTX_new_for_pkey(pk, selection, "DER", structure, NULL);
  if (!s->enc || OSSL_ENCODER_CTX_get_num_encoders(s->enc) == 0 ||
      !OSSL_ENCODER_to_data(s->enc, &der, &derlen))
    return crypto_fail(L, s, "ECRYPTO", "encoding the key");
  s->mem = der;
  if (!(s->bio = BIO_new(BIO_s_mem())) || !PEM_write_bio(s->bio, label, "", der, (long)derlen))
    return crypto_fail(L, s, "ECRYPTO", "writing PEM");
  long n = BIO_get_mem_data(s->bio, &data);
  lua_pushlstring(L, data, (size_t)n);
  crypto_scratch_free(s);
  return 1;
}

/*
** key:pem{format=} -> PEM text | nil, msg, "ECRYPTO"
** format "pkcs8" (PRIVATE KEY, default), "sec1" (EC PRIVATE KEY, ECDSA
** only), "pkcs1" (RSA PRIVATE KEY, RSA only), "ed25519" (ED25519 PRIVATE
** KEY, Ed25519 only).  Raises for a public-only key or a format that does
** not fit the key type.
*/
static int crypto_key_pem(lua_State *L) {
  static const char *const allowed[] = {"format", NULL};
  static const char *const formats[] = {"pkcs8", "sec1", "pkcs1", "ed25519", NULL};
  static const char *const kinds[] = {NULL, "ecdsa", "rsa", "ed25519"};
  static const char *const labels[] = {"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY",
                                       "ED25519 PRIVATE KEY"};
  crypto_key *k = crypto_key_check(L, 1);
  tlr_checkopts(L, 2, allowed);
  const char *fname = tlr_optstring(L, 2, "format", "pkcs8", NULL);
  int f = 0;
  while (formats[f] && strcmp(formats[f], fname) != 0) f++;
  if (!formats[f]) return luaL_argerror(L, 2, lua_pushfstring(L, "unknown format '%s'", fname));
  const char *kind = crypto_key_kind(k->pkey);
  if (!k->priv) return luaL_argerror(L, 1, "a public key has no private PEM");
  if (kinds[f] && strcmp(kinds[f], kind) != 0)
    return luaL_argerror(L, 2,
                         lua_pushfstring(L, "format '%s' does not fit a %s key", fname, kind));
  return crypto_key_encode(L, k->pkey, EVP_PKEY_KEYPAIR,
                           f == 1 || f == 2 ? "type-specific" : "PrivateKeyInfo", labels[f]);
}

/* key:public_pem() -> "PUBLIC KEY" PEM text | nil, msg, "ECRYPTO" */
static int crypto_key_public_pem(lua_State *L) {
  crypto_key *k = crypto_key_check(L, 1);
  return crypto_key_encode(L, k->pkey, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo", "PUBLIC KEY");
}

/* key:public_key() -> a new Key holding only the public half */
static int crypto_key_public_key(lua_State *L) {
  crypto_key *k = crypto_key_check(L, 1);
  crypto_key *pub = crypto_key_new(L);
  crypto_scratch *s = crypto_scratch_new(L);
  unsigned char *der = NULL;
  size_t derlen = 0;
  s->enc = OSSL_ENCODER_CTX_new_for_pkey(k->pkey, EVP_PKEY_PUBLIC_KEY, "DER",
                                         "SubjectPublicKeyInfo", NULL);
  if (!s->enc || !OSSL_ENCODER_to_data(s->enc, &der, &derlen))
    return crypto_fail(L, s, "ECRYPTO", "public_key");
  s->mem = der;
  const unsigned char *p = der;
  if (!d2i_PUBKEY(&s->pkey, &p, (long)derlen)) return crypto_fail(L, s, "ECRYPTO", "public_key");
  pub->pkey = s->pkey;
  s->pkey = NULL;
  crypto_scratch_free(s);
  lua_pop(L, 1);  /* [key, pub] */
  return 1;
}

/* key:type() -> "ed25519" | "ecdsa" | "rsa" */
static int crypto_key_type(lua_State *L) {
  lua_pushstring(L, crypto_key_kind(crypto_key_check(L, 1)->pkey));
  return 1;
}

/* key:bits() -> key size in bits (256 for Ed25519 and P-256) */
static int crypto_key_bits(lua_State *L) {
  lua_pushinteger(L, EVP_PKEY_get_bits(crypto_key_check(L, 1)->pkey));
  return 1;
}

/* key:curve() -> "P-256" | "P-384" | "P-521" for ECDSA keys, else nil */
static int crypto_key_curve_m(lua_State *L) {
  const char *curve = crypto_key_curve(crypto_key_check(L, 1)->pkey);
  if (curve) lua_pushstring(L, curve);
  else lua_pushnil(L);
  return 1;
}

/* key:is_private() -> boolean */
static int crypto_key_is_private(lua_State *L) {
  lua_pushboolean(L, crypto_key_check(L, 1)->priv);
  return 1;
}

/*
** key:sign(data) -> signature | nil, msg, "ECRYPTO"
** Ed25519 pure; ECDSA (DER signature) and RSA PKCS#1 v1.5 over SHA-256
** (SHA-384/512 for P-384/P-521).  Raises for a public-only key.
*/
static int crypto_key_sign(lua_State *L) {
  crypto_key *k = crypto_key_check(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, k->priv, 1, "cannot sign with a public key");
  size_t siglen = (size_t)EVP_PKEY_get_size(k->pkey);
  unsigned char *sig = lua_newuserdatauv(L, siglen, 0);
  crypto_scratch *s = crypto_scratch_new(L);
  if (!(s->mctx = EVP_MD_CTX_new()) ||
      EVP_DigestSignInit(s->mctx, NULL, crypto_key_md(k->pkey), NULL, k->pkey) != 1 ||
      EVP_DigestSign(s->mctx, sig, &siglen, (const unsigned char *)data, len) != 1)
    return crypto_fail(L, s, "ECRYPTO", "sign");
  crypto_scratch_free(s);
  lua_pushlstring(L, (const char *)sig, siglen);
  return 1;
}

/* key:verify(data, sig) -> boolean (false for a wrong or malformed signature) */
static int crypto_key_verify(lua_State *L) {
  crypto_key *k = crypto_key_check(L, 1);
  size_t len, siglen;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *sig = luaL_checklstring(L, 3, &siglen);
  crypto_scratch *s = crypto_scratch_new(L);
  int ok = (s->mctx = EVP_MD_CTX_new()) != NULL &&
           EVP_DigestVerifyInit(s->mctx, NULL, crypto_key_md(k->pkey), NULL, k->pkey) == 1 &&
           EVP_DigestVerify(s->mctx, (const unsigned char *)sig, siglen,
                            (const unsigned char *)data, len) == 1;
  ERR_clear_error();
  crypto_scratch_free(s);
  lua_pushboolean(L, ok);
  return 1;
}

static int crypto_key_tostring(lua_State *L) {
  crypto_key *k = luaL_checkudata(L, 1, CRYPTO_KEY_MT);
  if (!k->pkey) lua_pushliteral(L, "tlr.crypto.Key (closed)");
  else lua_pushfstring(L, "tlr.crypto.Key (%s-%d, %s)", crypto_key_kind(k->pkey),
                       EVP_PKEY_get_bits(k->pkey), k->priv ? "private" : "public");
  return 1;
}

/* ========== registration ========== */

static const luaL_Reg crypto_funcs[] = {
  {"random", crypto_random},
  {"digest", crypto_digest},
  {"hmac", crypto_hmac},
  {"equal", crypto_equal},
  {"hash", crypto_hash_new},
  {"base64_encode", crypto_base64_encode},
  {"base64_decode", crypto_base64_decode},
  {"hex_encode", crypto_hex_encode},
  {"hex_decode", crypto_hex_decode},
  {"generate_key", crypto_generate_key},
  {"rsa_job", crypto_rsa_job},
  {"load_key", crypto_load_key},
  {NULL, NULL}};

static const luaL_Reg hash_methods[] = {
  {"update", crypto_hash_update},
  {"digest", crypto_hash_digest},
  {"close", crypto_hash_close},
  {NULL, NULL}};

static const luaL_Reg hash_meta[] = {
  {"__gc", crypto_hash_close},
  {"__close", crypto_hash_close},
  {NULL, NULL}};

static const luaL_Reg key_methods[] = {
  {"pem", crypto_key_pem},
  {"public_pem", crypto_key_public_pem},
  {"public_key", crypto_key_public_key},
  {"type", crypto_key_type},
  {"bits", crypto_key_bits},
  {"curve", crypto_key_curve_m},
  {"is_private", crypto_key_is_private},
  {"sign", crypto_key_sign},
  {"verify", crypto_key_verify},
  {"close", crypto_key_close},
  {NULL, NULL}};

static const luaL_Reg key_meta[] = {
  {"__gc", crypto_key_close},
  {"__close", crypto_key_close},
  {"__tostring", crypto_key_tostring},
  {NULL, NULL}};

int luaopen_tlr_crypto_core(lua_State *L) {
  tlr_newclass(L, HASH_MT, hash_methods, hash_meta);
  tlr_newclass(L, CRYPTO_KEY_MT, key_methods, key_meta);
  luaL_newlib(L, crypto_funcs);
  return 1;
}
