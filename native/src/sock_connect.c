/*
 * A TCP (or MPTCP) connection with socket options that must be set before
 * connect(2), which Node cannot do: SO_BINDTODEVICE, SO_MARK, IPPROTO_MPTCP,
 * a local bind. We create the socket, apply the options, start a
 * non-blocking connect, and watch for writability with a uv_poll_t on Node's
 * loop. Once connected (SO_ERROR == 0) the fd is handed to JS, which wraps
 * it in a net.Socket; Node cannot connect an fd it did not open itself.
 *
 *   JS connectStart ──► socket → setsockopt… → bind? → connect (EINPROGRESS)
 *                                                       │ uv_poll WRITABLE
 *   JS cb(null, fd) ◄── SO_ERROR == 0 ◄─────────────────┘
 */
#include "polytun.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#define CONN_MAGIC 0x5054434eu

typedef struct {
  uv_poll_t poll;
  uint32_t magic;
  napi_env env;
  napi_ref cb, resource;
  napi_async_context ctx;
  int fd;
  bool done, env_gone;
  int refs; /* uv handle + JS external */
} conn_t;

/* Parses an IP literal (IPv6 may carry %scope) with `port` into `ss`. */
bool pt_parse_addr(const char *text, int port, struct sockaddr_storage *ss, socklen_t *len) {
  char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
    return true;
  }
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  snprintf(buf, sizeof buf, "%s", text);
  char *scope = strchr(buf, '%');
  if (scope != NULL) {
    *scope++ = '\0';
    v6->sin6_scope_id = if_nametoindex(scope);
    if (v6->sin6_scope_id == 0) return false;
  }
  if (inet_pton(AF_INET6, buf, &v6->sin6_addr) != 1) return false;
  v6->sin6_family = AF_INET6;
  v6->sin6_port = htons((uint16_t)port);
  *len = sizeof *v6;
  return true;
}

static napi_value fail(napi_env env, int fd, int err, const char *syscall, const char *msg) {
  if (fd >= 0) close(fd);
  return pt_throw_errno(env, err, syscall, msg);
}

static void conn_unref(conn_t *c) {
  if (--c->refs == 0) free(c);
}

static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (!c->env_gone) {
    napi_delete_reference(c->env, c->cb);
    napi_delete_reference(c->env, c->resource);
    napi_async_destroy(c->env, c->ctx);
  }
  conn_unref(c);
}

static void on_env_teardown(void *arg);

/* Ends the operation; closes the fd unless it is being handed to JS. */
static void conn_finish(conn_t *c, bool close_fd) {
  c->done = true;
  if (!c->env_gone) napi_remove_env_cleanup_hook(c->env, on_env_teardown, c);
  uv_poll_stop(&c->poll);
  uv_close((uv_handle_t *)&c->poll, on_closed);
  if (close_fd) close(c->fd);
}

static void on_env_teardown(void *arg) {
  conn_t *c = arg;
  c->env_gone = true;
  if (!c->done) conn_finish(c, true);
}

static void on_external_gc(napi_env env, void *data, void *hint) { conn_unref(data); }

static void on_writable(uv_poll_t *h, int status, int events) {
  conn_t *c = h->data;
  if (c->done) return;
  /* libuv reports EPOLLERR as status UV_EBADF; the real reason (e.g.
   * ECONNREFUSED) is in SO_ERROR, so read that first, always. */
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err == 0 && status < 0) err = -status;
  conn_finish(c, err != 0);
  napi_env env = c->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2], cb, resource, result;
  argv[0] = err != 0 ? pt_errno_error(env, err, "connect", NULL) : NULL;
  if (argv[0] == NULL) napi_get_null(env, &argv[0]);
  napi_create_int32(env, err != 0 ? -1 : c->fd, &argv[1]);
  if (napi_get_reference_value(env, c->cb, &cb) == napi_ok &&
      napi_get_reference_value(env, c->resource, &resource) == napi_ok &&
      napi_make_callback(env, c->ctx, resource, cb, 2, argv, &result) != napi_ok) {
    pt_report_exception(env);
  }
  napi_close_handle_scope(env, scope);
}

/* Applies the options and starts connect(2); returns the fd or throws (-1). */
static int open_and_connect(napi_env env, napi_value *argv) {
  char addr[128], dev[IF_NAMESIZE], local[128], msg[256];
  int32_t port, lport;
  int64_t mark = -1;
  bool mptcp = false;
  struct sockaddr_storage ss, ls;
  socklen_t sslen, lslen;
  if (!pt_arg_string(env, argv[0], addr, sizeof addr) || !pt_arg_int32(env, argv[1], &port) ||
      napi_get_value_int64(env, argv[3], &mark) != napi_ok || napi_get_value_bool(env, argv[4], &mptcp) != napi_ok ||
      !pt_arg_int32(env, argv[6], &lport)) {
    pt_throw_type(env, "connectStart(address, port, device, mark, mptcp, localAddress, localPort, cb)");
    return -1;
  }
  if (mark < -1 || mark > 0xffffffffLL) {
    pt_throw_errno(env, EINVAL, "connectStart", "mark must be -1 (none) or a 32-bit unsigned integer");
    return -1;
  }
  if (port < 1 || port > 65535 || lport < 0 || lport > 65535 || !pt_parse_addr(addr, port, &ss, &sslen)) {
    snprintf(msg, sizeof msg, "connect target must be an IP literal and a port 1-65535, got %s:%d", addr, port);
    pt_throw_errno(env, EINVAL, "connectStart", msg);
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, mptcp ? IPPROTO_MPTCP : IPPROTO_TCP);
  if (fd < 0) {
    bool noproto = errno == EPROTONOSUPPORT || errno == EINVAL || errno == ENOPROTOOPT;
    fail(env, -1, errno, "socket", mptcp && noproto ? "MPTCP sockets unavailable (kernel without MPTCP, or sysctl net.mptcp.enabled=0)" : NULL);
    return -1;
  }
  if (!pt_is_nullish(env, argv[2])) {
    if (!pt_arg_string(env, argv[2], dev, sizeof dev)) {
      fail(env, fd, EINVAL, "setsockopt(SO_BINDTODEVICE)", "device name must be a string of at most 15 characters");
      return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, (socklen_t)strlen(dev) + 1) < 0) {
      int e = errno;
      if (e == ENODEV) snprintf(msg, sizeof msg, "no network device named '%s' (SO_BINDTODEVICE)", dev);
      else if (e == EPERM) snprintf(msg, sizeof msg, "binding to device '%s' needs CAP_NET_RAW (SO_BINDTODEVICE)", dev);
      fail(env, fd, e, "setsockopt(SO_BINDTODEVICE)", e == ENODEV || e == EPERM ? msg : NULL);
      return -1;
    }
  }
  uint32_t mark32 = (uint32_t)mark;
  if (mark >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark32, sizeof mark32) < 0) {
    fail(env, fd, errno, "setsockopt(SO_MARK)", errno == EPERM ? "SO_MARK needs CAP_NET_ADMIN" : NULL);
    return -1;
  }
  bool has_local = !pt_is_nullish(env, argv[5]);
  if (has_local || lport > 0) {
    if (has_local && (!pt_arg_string(env, argv[5], local, sizeof local) || !pt_parse_addr(local, lport, &ls, &lslen) ||
                      ls.ss_family != ss.ss_family)) {
      fail(env, fd, EINVAL, "bind", "localAddress must be an IP literal of the same family as the target");
      return -1;
    }
    if (!has_local) {
      /* Port only: the wildcard address of the target's family. */
      pt_parse_addr(ss.ss_family == AF_INET ? "0.0.0.0" : "::", lport, &ls, &lslen);
    }
    if (lport == 0) {
      /* Leave the ephemeral port to connect(), which can share it across
       * destinations, instead of reserving one at bind() time. Best effort. */
      int one = 1;
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    }
    if (bind(fd, (struct sockaddr *)&ls, lslen) < 0) {
      fail(env, fd, errno, "bind", NULL);
      return -1;
    }
  }
  if (connect(fd, (struct sockaddr *)&ss, sslen) < 0 && errno != EINPROGRESS) {
    fail(env, fd, errno, "connect", NULL);
    return -1;
  }
  return fd;
}

/* connectStart(address, port, device|null, mark|-1, mptcp, localAddress|null, localPort, cb(err, fd)) → handle */
static napi_value connect_start(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8], resource, name, handle;
  napi_valuetype t = napi_undefined;
  uv_loop_t *loop = NULL;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8 || napi_typeof(env, argv[7], &t) != napi_ok || t != napi_function) {
    return pt_throw_type(env, "connectStart: the last argument must be a callback");
  }
  PT_CALL(env, napi_get_uv_event_loop(env, &loop));
  int fd = open_and_connect(env, argv);
  if (fd < 0) return NULL;
  conn_t *c = calloc(1, sizeof *c);
  if (c == NULL) return fail(env, fd, ENOMEM, "connectStart", NULL);
  c->magic = CONN_MAGIC;
  c->env = env;
  c->fd = fd;
  c->refs = 1;
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_create_string_utf8(env, "polytun:Connect", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &c->ctx) != napi_ok) {
    free(c);
    close(fd);
    pt_throw_last(env, "connectStart setup");
    return NULL;
  }
  int rc = uv_poll_init_socket(loop, &c->poll, fd);
  if (rc < 0) {
    napi_async_destroy(env, c->ctx);
    free(c);
    return fail(env, fd, -rc, "uv_poll_init", NULL);
  }
  c->poll.data = c;
  napi_create_reference(env, argv[7], 1, &c->cb);
  napi_create_reference(env, resource, 1, &c->resource);
  napi_add_env_cleanup_hook(env, on_env_teardown, c);
  rc = uv_poll_start(&c->poll, UV_WRITABLE, on_writable);
  if (rc < 0 || napi_create_external(env, c, on_external_gc, NULL, &handle) != napi_ok) {
    conn_finish(c, true);
    if (rc < 0) return pt_throw_errno(env, -rc, "uv_poll_start", NULL);
    pt_throw_last(env, "connectStart handle");
    return NULL;
  }
  c->refs++;
  return handle;
}

/* connectCancel(handle): abandons a pending connect and closes its fd; no callback follows. */
static napi_value connect_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL ||
      ((conn_t *)data)->magic != CONN_MAGIC) {
    return pt_throw_type(env, "connectCancel(handle): not a connect handle");
  }
  conn_t *c = data;
  if (!c->done) conn_finish(c, true);
  return pt_undefined(env);
}

bool pt_init_sock_connect(napi_env env, napi_value exports) {
  return pt_export(env, exports, "connectStart", connect_start) &&
         pt_export(env, exports, "connectCancel", connect_cancel);
}
