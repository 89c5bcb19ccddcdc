/*
** crypto.h: private to modules/crypto.c and modules/x509.c (not part of the
** host API).  It holds the layout of the tlr.crypto.Key userdata, which
** both natives read, and a "scratch" userdata that owns the OpenSSL objects
** of one call: everything a function acquires goes into its scratch, so a
** memory error raised by a lua_push* while they are held cannot leak them
** (the scratch's __gc frees whatever is left), and one crypto_scratch_free
** releases them all before a `nil, msg, code` return.
**
** Everything here is static inline: the natives export one symbol each.
*/
#ifndef TLR_CRYPTO_H
#define TLR_CRYPTO_H

#include <string.h>

#include <openssl/bio.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tlr.h"

#define CRYPTO_KEY_MT "tlr.crypto.Key"
#define CRYPTO_SCRATCH_MT "tlr.crypto.Scratch"

/* tlr.crypto.Key: pkey is NULL once closed; priv says if it holds a private key. */
typedef struct crypto_key {
  EVP_PKEY *pkey;
  int priv;
} crypto_key;

/* The Key at idx; raises on another type or a closed key. */
static inline crypto_key *crypto_key_check(lua_State *L, int idx) {
  crypto_key *k = luaL_checkudata(L, idx, CRYPTO_KEY_MT);
  if (!k->pkey) luaL_error(L, "attempt to use a closed key");
  return k;
}

/* "ed25519", "ecdsa", "rsa" or NULL for a key type tlr does not handle. */
static inline const char *crypto_key_kind(const EVP_PKEY *pk) {
  if (EVP_PKEY_is_a(pk, "ED25519")) return "ed25519";
  if (EVP_PKEY_is_a(pk, "EC")) return "ecdsa";
  if (EVP_PKEY_is_a(pk, "RSA")) return "rsa";
  return NULL;
}

/* The NIST name of an EC key's curve ("P-256"), or NULL. */
static inline const char *crypto_key_curve(const EVP_PKEY *pk) {
  static const char *const names[][2] = {
    {"prime256v1", "P-256"}, {"secp384r1", "P-384"}, {"secp521r1", "P-521"}};
  char group[64];
  size_t len;
  if (!EVP_PKEY_is_a(pk, "EC")) return NULL;
  if (!EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof group, &len)) return NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(group, names[i][0]) == 0) return names[i][1];
  return NULL;
}

/* The digest a key signs with: NULL for Ed25519 ("pure"), SHA-2 otherwise. */
static inline const EVP_MD *crypto_key_md(const EVP_PKEY *pk) {
  const char *curve = crypto_key_curve(pk);
  if (EVP_PKEY_is_a(pk, "ED25519")) return NULL;
  if (curve && strcmp(curve, "P-384") == 0) return EVP_sha384();
  if (curve && strcmp(curve, "P-521") == 0) return EVP_sha512();
  return EVP_sha256();
}

/*
** Writes the reason of the last OpenSSL error of this thread into buf (or
** "unknown error") and empties the thread's error queue.
*/
static inline void crypto_errmsg(char *buf, size_t n) {
  unsigned long e = ERR_peek_last_error();
  if (e) {
    const char *reason = ERR_reason_error_string(e);
    if (reason) snprintf(buf, n, "%s", reason);
    else ERR_error_string_n(e, buf, n);
  } else {
    snprintf(buf, n, "unknown error");
  }
  ERR_clear_error();
}

/* The OpenSSL objects one call may hold; NULL slots are empty. */
typedef struct crypto_scratch {
  BIO *bio;
  EVP_PKEY *pkey;
  EVP_PKEY_CTX *pctx;
  EVP_MD_CTX *mctx;
  EVP_MAC *mac;
  EVP_MAC_CTX *macctx;
  OSSL_ENCODER_CTX *enc;
  OSSL_DECODER_CTX *dec;
  X509 *cert;
  X509 *issuer;
  X509_REQ *req;
  X509_STORE *store;
  X509_STORE_CTX *sctx;
  STACK_OF(X509) *chain;
  GENERAL_NAMES *names;
  unsigned char *mem; /* OPENSSL_malloc'd */
} crypto_scratch;

/* Frees every object the scratch holds; safe to call again. */
static inline void crypto_scratch_free(crypto_scratch *s) {
  BIO_free(s->bio);
  EVP_PKEY_free(s->pkey);
  EVP_PKEY_CTX_free(s->pctx);
  EVP_MD_CTX_free(s->mctx);
  EVP_MAC_CTX_free(s->macctx);
  EVP_MAC_free(s->mac);
  OSSL_ENCODER_CTX_free(s->enc);
  OSSL_DECODER_CTX_free(s->dec);
  X509_free(s->cert);
  X509_free(s->issuer);
  X509_REQ_free(s->req);
  X509_STORE_CTX_free(s->sctx);
  X509_STORE_free(s->store);
  sk_X509_pop_free(s->chain, X509_free);
  GENERAL_NAMES_free(s->names);
  OPENSSL_free(s->mem);
  memset(s, 0, sizeof *s);
}

static inline int crypto_scratch_gc(lua_State *L) {
  crypto_scratch_free(luaL_checkudata(L, 1, CRYPTO_SCRATCH_MT));
  return 0;
}

/* Pushes an empty scratch (call it after the arguments are checked). */
static inline crypto_scratch *crypto_scratch_new(lua_State *L) {
  crypto_scratch *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  if (luaL_newmetatable(L, CRYPTO_SCRATCH_MT)) {
    lua_pushcfunction(L, crypto_scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return s;
}

/*
** Returns tlr_fail(code, "<what>: <OpenSSL reason>") after freeing the
** scratch, so no OpenSSL object is held when the failure is pushed.
*/
static inline int crypto_fail(lua_State *L, crypto_scratch *s, const char *code,
                              const char *what) {
  char reason[256];
  crypto_errmsg(reason, sizeof reason);
  crypto_scratch_free(s);
  return tlr_fail(L, code, "%s: %s", what, reason);
}

#endif
