/*
 * Error and argument helpers. Errors thrown to JS look like Node's own
 * system errors: `code` = errno name, `errno` = number, `syscall` = the call
 * that failed; `message` is written for a human (what to do about it).
 */
#include "polytun.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The errno's symbolic name. glibc knows them all (libuv lacks EBADFD,
 * which a deleted TUN device returns); elsewhere ask libuv, whose error
 * codes are the negated errno values on Unix. */
void pt_errno_name(int err, char *buf, size_t cap) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) {
    snprintf(buf, cap, "%s", name);
    return;
  }
#endif
  uv_err_name_r(-err, buf, cap);
}

napi_value pt_errno_error(napi_env env, int err, const char *syscall, const char *message) {
  char name[64];
  char text[512];
  pt_errno_name(err, name, sizeof name);
  if (message != NULL) {
    snprintf(text, sizeof text, "%s", message);
  } else if (err == EBADFD) {
    snprintf(text, sizeof text, "%s failed: EBADFD (the TUN device was deleted while open)", syscall);
  } else {
    snprintf(text, sizeof text, "%s failed: %s (%s)", syscall, name, strerror(err));
  }
  napi_value msg, code, error, errnum, sys;
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_error(env, code, msg, &error) != napi_ok) return NULL;
  if (napi_create_int32(env, err, &errnum) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys) != napi_ok) return NULL;
  napi_set_named_property(env, error, "errno", errnum);
  napi_set_named_property(env, error, "syscall", sys);
  return error;
}

napi_value pt_throw_errno(napi_env env, int err, const char *syscall, const char *message) {
  napi_value error = pt_errno_error(env, err, syscall, message);
  if (error != NULL) napi_throw(env, error);
  return NULL;
}

napi_value pt_throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

void pt_throw_last(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char text[256];
  snprintf(text, sizeof text, "polytun native: %s failed: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message : "unknown N-API error");
  napi_throw_error(env, "ERR_NATIVE_INTERNAL", text);
}

/*
 * A JS callback invoked from a libuv callback threw. Nothing on the C side can
 * handle it, so hand it to Node's uncaught-exception machinery, exactly as an
 * EventEmitter listener that throws would.
 */
void pt_report_exception(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  napi_value err;
  if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
}

bool pt_arg_int32(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return false;
  return napi_get_value_int32(env, v, out) == napi_ok;
}

bool pt_arg_string(napi_env env, napi_value v, char *buf, size_t cap) {
  napi_valuetype t;
  size_t len = 0;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return false;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len + 1 > cap) return false;
  return napi_get_value_string_utf8(env, v, buf, cap, &len) == napi_ok;
}

bool pt_is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return true;
  return t == napi_undefined || t == napi_null;
}

napi_value pt_undefined(napi_env env) {
  napi_value u = NULL;
  napi_get_undefined(env, &u);
  return u;
}

bool pt_set_int(napi_env env, napi_value obj, const char *key, int64_t value) {
  napi_value v;
  if (napi_create_int64(env, value, &v) != napi_ok) return false;
  return napi_set_named_property(env, obj, key, v) == napi_ok;
}

bool pt_export(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value f;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f) != napi_ok) return false;
  return napi_set_named_property(env, exports, name, f) == napi_ok;
}
