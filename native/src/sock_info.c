/*
 * Socket introspection: which protocol a socket really uses (TCP or MPTCP),
 * the device it is bound to and its mark, read back from the kernel so tests
 * and diagnostics do not have to trust what was asked for. Plus a probe for
 * MPTCP support.
 */
#include "polytun.h"

#include <errno.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

/* socketInfo(fd) → { protocol, device, mark } (device "" when unbound) */
static napi_value socket_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, vdev;
  int32_t fd;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !pt_arg_int32(env, argv[0], &fd)) return pt_throw_type(env, "socketInfo(fd): fd must be a number");
  int protocol = 0;
  uint32_t mark = 0;
  char dev[IF_NAMESIZE + 1] = {0};
  socklen_t len = sizeof protocol;
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) < 0) {
    return pt_throw_errno(env, errno, "getsockopt(SO_PROTOCOL)", NULL);
  }
  len = IF_NAMESIZE;
  if (getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &len) < 0) {
    return pt_throw_errno(env, errno, "getsockopt(SO_BINDTODEVICE)", NULL);
  }
  len = sizeof mark;
  if (getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len) < 0) return pt_throw_errno(env, errno, "getsockopt(SO_MARK)", NULL);
  PT_CALL(env, napi_create_object(env, &result));
  PT_CALL(env, napi_create_string_utf8(env, dev, strnlen(dev, IF_NAMESIZE), &vdev));
  PT_CALL(env, napi_set_named_property(env, result, "device", vdev));
  if (!pt_set_int(env, result, "protocol", protocol) || !pt_set_int(env, result, "mark", mark)) {
    pt_throw_last(env, "socketInfo result");
    return NULL;
  }
  return result;
}

/* mptcpProbe() → null when an IPPROTO_MPTCP socket can be created, else the errno name. */
static napi_value mptcp_probe(napi_env env, napi_callback_info info) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP);
  napi_value result;
  if (fd >= 0) {
    close(fd);
    PT_CALL(env, napi_get_null(env, &result));
    return result;
  }
  char name[64];
  pt_errno_name(errno, name, sizeof name);
  PT_CALL(env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &result));
  return result;
}

/* mptcpListen(host, port, backlog) → fd of a listening IPPROTO_MPTCP socket
 * (non-blocking, close-on-exec, SO_REUSEADDR) for net.Server#listen({fd}).
 * Node cannot create one; accepted connections are MPTCP when the client
 * speaks it and plain TCP otherwise (the kernel falls back by itself). */
static napi_value mptcp_listen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  int32_t port, backlog;
  struct sockaddr_storage ss;
  socklen_t sslen;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !pt_arg_string(env, argv[0], host, sizeof host) || !pt_arg_int32(env, argv[1], &port) ||
      !pt_arg_int32(env, argv[2], &backlog) || port < 0 || port > 65535) {
    return pt_throw_type(env, "mptcpListen(host, port, backlog): an IP literal, a port and a backlog expected");
  }
  if (!pt_parse_addr(host, port, &ss, &sslen)) return pt_throw_type(env, "mptcpListen: host must be an IP literal");
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_MPTCP);
  if (fd < 0) return pt_throw_errno(env, errno, "socket", "cannot create an MPTCP socket");
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 || bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
    int err = errno;
    close(fd);
    return pt_throw_errno(env, err, "bind", NULL);
  }
  if (listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    return pt_throw_errno(env, err, "listen", NULL);
  }
  PT_CALL(env, napi_create_int32(env, fd, &result));
  return result;
}

bool pt_init_sock_info(napi_env env, napi_value exports) {
  return pt_export(env, exports, "socketInfo", socket_info) && pt_export(env, exports, "mptcpProbe", mptcp_probe) &&
         pt_export(env, exports, "mptcpListen", mptcp_listen);
}
