/*
 * Opening a TUN device, writing packets to it, closing it.
 *
 * The device is opened IFF_TUN | IFF_NO_PI: each read(2) returns exactly one
 * bare IP packet and each write(2) injects one, with no 4-byte packet-info
 * prefix. With OPEN_VNET_HDR it is also IFF_VNET_HDR: every read and write
 * starts with a 10-byte struct virtio_net_hdr (checksum and segmentation
 * offload metadata, see src/tun/vnet.ts), and tunSetOffload (TUNSETOFFLOAD)
 * says which offloads the kernel may hand us: with TUN_F_TSO4/6 a read can
 * return one TCP "super-packet" of up to 64 KiB that the kernel never
 * segmented, and a write can inject one that it never has to. The fd is non-blocking (reads are driven by uv_poll, see
 * tun_reader.c) and close-on-exec (child processes such as `ip` must not
 * inherit it, or the device would outlive our close()).
 */
#include "polytun.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OPEN_VNET_HDR = 1 };
#define VNET_HDR_LEN 10 /* sizeof(struct virtio_net_hdr); the kernel's default TUNSETVNETHDRSZ */

static napi_value tun_error(napi_env env, int err, const char *syscall, const char *name) {
  char msg[256];
  switch (err) {
    case ENOENT:
    case ENODEV:
      snprintf(msg, sizeof msg, "/dev/net/tun missing (modprobe tun)");
      break;
    case EPERM:
    case EACCES:
      snprintf(msg, sizeof msg, "opening TUN device '%s' needs root or CAP_NET_ADMIN (%s)", name,
               err == EPERM ? "EPERM" : "EACCES");
      break;
    case EBUSY:
      snprintf(msg, sizeof msg, "TUN device '%s' exists and is already attached to another process", name);
      break;
    case EINVAL:
      snprintf(msg, sizeof msg, "cannot use '%s' as a TUN device (a non-TUN device of that name exists?)", name);
      break;
    default:
      return pt_throw_errno(env, err, syscall, NULL);
  }
  return pt_throw_errno(env, err, syscall, msg);
}

/* openTun(name?: string, flags?: number (OPEN_VNET_HDR)) → { fd, name } */
static napi_value open_tun(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t flags = 0;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc >= 2 && !pt_is_nullish(env, argv[1]) && (!pt_arg_int32(env, argv[1], &flags) || (flags & ~OPEN_VNET_HDR) != 0)) {
    return pt_throw_type(env, "openTun(name, flags): flags must be 0 or 1 (vnet header)");
  }
  char name[IFNAMSIZ] = {0};
  if (argc >= 1 && !pt_is_nullish(env, argv[0])) {
    if (!pt_arg_string(env, argv[0], name, sizeof name) || name[0] == '\0' || strchr(name, '/') != NULL) {
      return pt_throw_errno(env, EINVAL, "openTun",
                            "TUN device name must be 1-15 characters without '/'");
    }
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return tun_error(env, errno, "open", name[0] ? name : "tun%d");

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | ((flags & OPEN_VNET_HDR) ? IFF_VNET_HDR : 0);
  /* An empty name lets the kernel pick tunN; "%d" in a name works too. */
  memcpy(ifr.ifr_name, name, sizeof name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return tun_error(env, err, "ioctl(TUNSETIFF)", name[0] ? name : "tun%d");
  }
  napi_value result, vname;
  PT_CALL(env, napi_create_object(env, &result));
  PT_CALL(env, napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &vname));
  PT_CALL(env, napi_set_named_property(env, result, "name", vname));
  if (!pt_set_int(env, result, "fd", fd)) {
    close(fd);
    pt_throw_last(env, "openTun result");
    return NULL;
  }
  return result;
}

/* tunSetOffload(fd, flags: TUN_F_* bits): TUNSETOFFLOAD; EINVAL when the kernel lacks one of them. */
static napi_value set_offload(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, flags;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !pt_arg_int32(env, argv[0], &fd) || !pt_arg_int32(env, argv[1], &flags) || flags < 0) {
    return pt_throw_type(env, "tunSetOffload(fd, flags): fd and flags must be numbers");
  }
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0) return pt_throw_errno(env, errno, "ioctl(TUNSETOFFLOAD)", NULL);
  return pt_undefined(env);
}

/*
 * writePackets(fd, packets: Uint8Array[], hdrs?: Uint8Array) → { written, dropped, invalid }
 *
 * One write(2) per packet: a TUN write hands the packet to the kernel's
 * receive path and returns, it does not wait for anything. With `hdrs` (a
 * device opened with the vnet header) packet i goes out as one writev(2) of
 * hdrs[10i, 10i+10) followed by the packet, so packets need no copy. A full queue
 * (EAGAIN/ENOBUFS) drops the packet as a congested link would; a packet the
 * kernel refuses as malformed (EINVAL/EMSGSIZE/EFAULT…) is counted as invalid, so
 * a remote peer sending garbage cannot make the writer throw. Anything else
 * (EBADF, EIO: the device is gone) is thrown.
 */
static napi_value write_packets(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  bool is_array = false;
  if (argc < 2 || !pt_arg_int32(env, argv[0], &fd)) return pt_throw_type(env, "writePackets(fd, packets): fd must be a number");
  PT_CALL(env, napi_is_array(env, argv[1], &is_array));
  if (!is_array) return pt_throw_type(env, "writePackets(fd, packets): packets must be an array");
  uint32_t n = 0, written = 0, dropped = 0, invalid = 0;
  PT_CALL(env, napi_get_array_length(env, argv[1], &n));
  uint8_t *hdrs = NULL;
  if (argc >= 3 && !pt_is_nullish(env, argv[2])) {
    bool hdr_buf = false;
    size_t hdr_len = 0;
    PT_CALL(env, napi_is_buffer(env, argv[2], &hdr_buf));
    if (!hdr_buf) return pt_throw_type(env, "writePackets: hdrs must be a Buffer or Uint8Array");
    PT_CALL(env, napi_get_buffer_info(env, argv[2], (void **)&hdrs, &hdr_len));
    if (hdr_len < (size_t)n * VNET_HDR_LEN) return pt_throw_type(env, "writePackets: hdrs must hold 10 bytes per packet");
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    bool is_buf = false;
    void *data = NULL;
    size_t len = 0;
    PT_CALL(env, napi_get_element(env, argv[1], i, &el));
    PT_CALL(env, napi_is_buffer(env, el, &is_buf));
    if (!is_buf) return pt_throw_type(env, "writePackets: every packet must be a Buffer or Uint8Array");
    PT_CALL(env, napi_get_buffer_info(env, el, &data, &len));
    ssize_t r;
    if (hdrs != NULL) {
      struct iovec iov[2] = {{hdrs + (size_t)i * VNET_HDR_LEN, VNET_HDR_LEN}, {data, len}};
      do {
        r = writev(fd, iov, 2);
      } while (r < 0 && errno == EINTR);
    } else {
      do {
        r = write(fd, data, len);
      } while (r < 0 && errno == EINTR);
    }
    if (r >= 0) {
      written++;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      dropped++;
    } else if (errno == EINVAL || errno == EMSGSIZE || errno == EFAULT || errno == EPROTO) {
      invalid++;
    } else {
      return pt_throw_errno(env, errno, "write", NULL);
    }
  }
  napi_value result;
  PT_CALL(env, napi_create_object(env, &result));
  if (!pt_set_int(env, result, "written", written) || !pt_set_int(env, result, "dropped", dropped) ||
      !pt_set_int(env, result, "invalid", invalid)) {
    pt_throw_last(env, "writePackets result");
    return NULL;
  }
  return result;
}

/* closeFd(fd): close(2), for fds the addon handed out. EINTR still closes on Linux. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !pt_arg_int32(env, argv[0], &fd)) return pt_throw_type(env, "closeFd(fd): fd must be a number");
  if (close(fd) < 0 && errno != EINTR) return pt_throw_errno(env, errno, "close", NULL);
  return pt_undefined(env);
}

bool pt_init_tun_open(napi_env env, napi_value exports) {
  return pt_export(env, exports, "openTun", open_tun) && pt_export(env, exports, "writePackets", write_packets) &&
         pt_export(env, exports, "tunSetOffload", set_offload) && pt_export(env, exports, "closeFd", close_fd);
}
