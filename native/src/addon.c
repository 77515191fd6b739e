/*
 * Module entry point. NAPI_MODULE_INIT makes the addon context-aware, so it
 * also loads in worker threads (the TUN benchmark writes from one).
 */
#include "polytun.h"

NAPI_MODULE_INIT() {
  if (!pt_init_tun_open(env, exports) || !pt_init_tun_reader(env, exports) ||
      !pt_init_sock_connect(env, exports) || !pt_init_sock_info(env, exports) ||
      !pt_init_aead(env, exports)) {
    pt_throw_last(env, "module init");
    return NULL;
  }
  return exports;
}
