/*
** curl.c: loads libcurl at run time (see tlr_curl.h for why).
*/
#include <dlfcn.h>
#include <stdio.h>

#include "tlr_curl.h"

tlr_curl_api tlr_curl;

const char *tlr_curl_load(void) {
  static int state = 0; /* 0 not tried, 1 loaded, -1 failed */
  static char why[256];
  if (state == 1) return NULL;
  if (state == -1) return why;
  /* the soname the build linked against, so the ABI is the one we compiled for */
  void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(why, sizeof why, "cannot load libcurl: %s", dlerror());
    state = -1;
    return why;
  }
#define TLR_CURL_RESOLVE(ret, name, args)                                        \
  *(void **)&tlr_curl.name = dlsym(lib, "curl_" #name);                          \
  if (!tlr_curl.name) {                                                          \
    snprintf(why, sizeof why, "libcurl lacks curl_%s (too old a version?)", #name); \
    state = -1;                                                                  \
    return why;                                                                  \
  }
  TLR_CURL_FUNCTIONS(TLR_CURL_RESOLVE)
#undef TLR_CURL_RESOLVE
  state = 1;
  return NULL;
}
