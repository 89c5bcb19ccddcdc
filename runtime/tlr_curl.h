/*
** tlr_curl.h: libcurl, loaded on first use.
**
** libcurl and the libraries it pulls in (Kerberos, LDAP, SSH, IDN, ...) are
** most of tlr's start-up cost and resident memory, and `tlr -e ''` or
** `tlr version --short` never need them.  So the binary does not link
** libcurl; the event loop dlopens it when the first request is made.  Code
** that includes this header calls curl_* exactly as usual: the names are
** macros for the resolved function pointers.  Call tlr_curl_load() first.
*/
#ifndef TLR_CURL_H
#define TLR_CURL_H

#define CURL_DISABLE_TYPECHECK /* the checks are macros on the names we redefine */
#include <curl/curl.h>

#define TLR_CURL_FUNCTIONS(X)                                                     \
  X(CURLcode, global_init, (long flags))                                          \
  X(CURL *, easy_init, (void))                                                    \
  X(CURLcode, easy_setopt, (CURL *, CURLoption, ...))                             \
  X(CURLcode, easy_getinfo, (CURL *, CURLINFO, ...))                              \
  X(void, easy_cleanup, (CURL *))                                                 \
  X(const char *, easy_strerror, (CURLcode))                                      \
  X(CURLM *, multi_init, (void))                                                  \
  X(CURLMcode, multi_setopt, (CURLM *, CURLMoption, ...))                         \
  X(CURLMcode, multi_add_handle, (CURLM *, CURL *))                               \
  X(CURLMcode, multi_remove_handle, (CURLM *, CURL *))                            \
  X(CURLMcode, multi_perform, (CURLM *, int *))                                   \
  X(CURLMcode, multi_poll, (CURLM *, struct curl_waitfd *, unsigned, int, int *)) \
  X(CURLMsg *, multi_info_read, (CURLM *, int *))                                 \
  X(CURLMcode, multi_cleanup, (CURLM *))                                          \
  X(struct curl_slist *, slist_append, (struct curl_slist *, const char *))       \
  X(void, slist_free_all, (struct curl_slist *))                                  \
  X(curl_version_info_data *, version_info, (CURLversion))

typedef struct tlr_curl_api {
#define TLR_CURL_FIELD(ret, name, args) ret(*name) args;
  TLR_CURL_FUNCTIONS(TLR_CURL_FIELD)
#undef TLR_CURL_FIELD
} tlr_curl_api;

extern tlr_curl_api tlr_curl;

/* Loads libcurl once; returns NULL, or a message saying why it cannot. */
const char *tlr_curl_load(void);

#undef curl_easy_setopt /* curl.h's pass-through macros when type checks are off */
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init tlr_curl.global_init
#define curl_easy_init tlr_curl.easy_init
#define curl_easy_setopt tlr_curl.easy_setopt
#define curl_easy_getinfo tlr_curl.easy_getinfo
#define curl_easy_cleanup tlr_curl.easy_cleanup
#define curl_easy_strerror tlr_curl.easy_strerror
#define curl_multi_init tlr_curl.multi_init
#define curl_multi_setopt tlr_curl.multi_setopt
#define curl_multi_add_handle tlr_curl.multi_add_handle
#define curl_multi_remove_handle tlr_curl.multi_remove_handle
#define curl_multi_perform tlr_curl.multi_perform
#define curl_multi_poll tlr_curl.multi_poll
#define curl_multi_info_read tlr_curl.multi_info_read
#define curl_multi_cleanup tlr_curl.multi_cleanup
#define curl_slist_append tlr_curl.slist_append
#define curl_slist_free_all tlr_curl.slist_free_all
#define curl_version_info tlr_curl.version_info

#endif
