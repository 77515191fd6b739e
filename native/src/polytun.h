/*
 * Shared declarations of polytun's native addon. Every exported function is a
 * plain N-API callback; errors thrown to JS carry `code` (the errno name,
 * e.g. "EPERM"), `errno` (the number) and `syscall`, so the TypeScript layer
 * can map them onto typed PolytunErrors without parsing messages.
 */
#ifndef POLYTUN_H
#define POLYTUN_H

#include <node_api.h>
#include <uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Returns NULL from the calling N-API function when an N-API call fails;
 * N-API itself has already recorded (or thrown) the reason. */
#define PT_CALL(env, call)                                   \
  do {                                                       \
    if ((call) != napi_ok) {                                 \
      pt_throw_last(env, #call);                             \
      return NULL;                                           \
    }                                                        \
  } while (0)

/* errors.c */
void pt_errno_name(int err, char *buf, size_t cap);
napi_value pt_errno_error(napi_env env, int err, const char *syscall, const char *message);
napi_value pt_throw_errno(napi_env env, int err, const char *syscall, const char *message);
napi_value pt_throw_type(napi_env env, const char *message);
void pt_throw_last(napi_env env, const char *what);
void pt_report_exception(napi_env env);
bool pt_arg_int32(napi_env env, napi_value v, int32_t *out);
/* Copies a JS string into buf (NUL-terminated); false if not a string or too long. */
bool pt_arg_string(napi_env env, napi_value v, char *buf, size_t cap);
bool pt_is_nullish(napi_env env, napi_value v);
/* sock_connect.c: an IP literal (IPv6 may carry %scope) and port into a sockaddr. */
bool pt_parse_addr(const char *text, int port, struct sockaddr_storage *ss, socklen_t *len);
napi_value pt_undefined(napi_env env);
bool pt_set_int(napi_env env, napi_value obj, const char *key, int64_t value);

/* Each source file registers its own functions on `exports`. */
bool pt_init_tun_open(napi_env env, napi_value exports);
bool pt_init_tun_reader(napi_env env, napi_value exports);
bool pt_init_sock_connect(napi_env env, napi_value exports);
bool pt_init_sock_info(napi_env env, napi_value exports);
bool pt_init_aead(napi_env env, napi_value exports);
bool pt_export(napi_env env, napi_value exports, const char *name, napi_callback fn);

#endif
