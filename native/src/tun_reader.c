/*
 * Readiness-driven TUN reader. A uv_poll_t watches the (non-blocking) TUN fd
 * on Node's own event loop; no thread-pool thread is parked in read(2). When
 * the fd is readable we read packets until EAGAIN, until `batch` packets or
 * until `max_bytes` bytes, then call JS once for the whole batch. (The byte
 * bound matters for 64 KiB super-packets: a batch must fit the session's
 * datagram queue, which is flushed only after the batch's callback.) Stopping at `batch` returns control
 * to the event loop; epoll is level-triggered, so the rest is read on the
 * next turn without starving timers and sockets.
 *
 * How a batch reaches JS (`mode`, chosen by measurement, see device.ts):
 *   0 copy   — an Array of Buffers, one napi_create_buffer_copy per packet
 *   1 batch  — one fresh Buffer holding the batch's packets back to back,
 *              lengths in a shared Uint32Array; JS slices views out of it
 *   2 shared — packets stay in one preallocated buffer reused for every
 *              batch (zero copies); the views are valid only during the call
 *
 *   slot layout of the scratch / shared buffer (slot = max packet size):
 *   +---------------+---------------+-----+-------------------+
 *   | packet 0 ...  | packet 1 ...  | ... | packet batch-1    |
 *   +---------------+---------------+-----+-------------------+
 *   0             slot          2*slot
 *
 * `lens` (a Uint32Array shared with JS) holds the batch's packet lengths in
 * lens[0..count), and in lens[batch] a running count of oversize packets.
 * On a device opened with the vnet header each "packet" here is that 10-byte
 * header followed by the IP packet (up to 64 KiB with TSO, hence a slot of
 * up to 64 KiB + 64); src/tun/device.ts splits them.
 */
#include "polytun.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MODE_COPY = 0, MODE_BATCH = 1, MODE_SHARED = 2 };

#define READER_MAGIC 0x50545244u /* guards tunReaderStop against foreign externals */

typedef struct {
  uv_poll_t poll;
  uint32_t magic;
  napi_env env;
  napi_ref cb;
  napi_ref resource; /* the object returned to JS; holds lens/shared alive */
  napi_async_context ctx;
  uint8_t *buf;
  uint32_t *lens;
  int fd, mode;
  uint32_t batch, slot;
  size_t max_bytes;
  bool stopped, env_gone;
  int refs; /* one for the uv handle, one for the JS external */
} reader_t;

static void reader_unref(reader_t *r) {
  if (--r->refs > 0) return;
  if (r->mode != MODE_SHARED) free(r->buf);
  free(r);
}

static void on_closed(uv_handle_t *h) {
  reader_t *r = h->data;
  if (!r->env_gone) {
    napi_delete_reference(r->env, r->cb);
    napi_delete_reference(r->env, r->resource);
    napi_async_destroy(r->env, r->ctx);
  }
  reader_unref(r);
}

static void on_env_teardown(void *arg);

static void reader_stop(reader_t *r) {
  if (r->stopped) return;
  r->stopped = true;
  if (!r->env_gone) napi_remove_env_cleanup_hook(r->env, on_env_teardown, r);
  /* uv_poll_stop drops the fd from epoll at once, so closing the fd right
   * after this returns is safe. */
  uv_poll_stop(&r->poll);
  uv_close((uv_handle_t *)&r->poll, on_closed);
}

static void on_env_teardown(void *arg) {
  reader_t *r = arg;
  r->env_gone = true;
  reader_stop(r);
}

static void on_external_gc(napi_env env, void *data, void *hint) { reader_unref(data); }

static void deliver(reader_t *r, napi_value err, uint32_t count, napi_value data) {
  napi_env env = r->env;
  napi_value argv[3], cb, resource, result;
  argv[0] = err;
  if (argv[0] == NULL && napi_get_null(env, &argv[0]) != napi_ok) return;
  if (napi_create_uint32(env, count, &argv[1]) != napi_ok) return;
  argv[2] = data;
  if (napi_get_reference_value(env, r->cb, &cb) != napi_ok) return;
  if (napi_get_reference_value(env, r->resource, &resource) != napi_ok) return;
  if (napi_make_callback(env, r->ctx, resource, cb, 3, argv, &result) != napi_ok) pt_report_exception(env);
}

static napi_value batch_value(reader_t *r, uint32_t n) {
  napi_env env = r->env;
  napi_value out = NULL;
  if (r->mode == MODE_SHARED) return pt_undefined(env);
  if (r->mode == MODE_BATCH) {
    size_t total = 0, off = 0;
    void *dst;
    for (uint32_t i = 0; i < n; i++) total += r->lens[i];
    if (napi_create_buffer(env, total, &dst, &out) != napi_ok) return NULL;
    for (uint32_t i = 0; i < n; i++) {
      memcpy((uint8_t *)dst + off, r->buf + (size_t)i * r->slot, r->lens[i]);
      off += r->lens[i];
    }
    return out;
  }
  if (napi_create_array_with_length(env, n, &out) != napi_ok) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value b;
    if (napi_create_buffer_copy(env, r->lens[i], r->buf + (size_t)i * r->slot, NULL, &b) != napi_ok) return NULL;
    if (napi_set_element(env, out, i, b) != napi_ok) return NULL;
  }
  return out;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  reader_t *r = h->data;
  if (r->stopped) return;
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  /* libuv turns EPOLLERR into status UV_EBADF and stops the watcher; a
   * read(2) tells the real reason (EBADFD once the device is gone). */
  int err = 0;
  uint32_t n = 0;
  size_t bytes = 0;
  /* Bounded by reads, not packets kept, so oversize packets cannot spin us. */
  for (uint32_t reads = 0; err == 0 && reads < r->batch && bytes < r->max_bytes; reads++) {
    ssize_t len = read(r->fd, r->buf + (size_t)n * r->slot, r->slot);
    if (len > (ssize_t)r->slot) {
      /* The kernel returns the full packet length even when it copied only
       * `slot` bytes: a packet bigger than the slot (MTU raised behind our
       * back) is dropped and counted in lens[batch], never half-delivered. */
      r->lens[r->batch]++;
    } else if (len > 0) {
      r->lens[n++] = (uint32_t)len;
      bytes += (size_t)len;
    } else if (len < 0 && errno == EINTR) {
      continue;
    } else if (len == 0) {
      /* A TUN read returns 0 only once the device is being deleted (its
       * queue is shut down before the fd is detached): say it as the
       * detached fd will, so the caller sees one reason whatever the timing. */
      err = EBADFD;
      break;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
  }
  /* EPOLLERR (libuv's UV_EBADF) on a TUN fd means it is detached (tun_chr_poll);
   * a read racing the deletion may still have seen EAGAIN. */
  if (err == 0 && status < 0) err = status == UV_EBADF ? EBADFD : -status;
  if (n > 0) {
    napi_value data = batch_value(r, n);
    if (data != NULL) deliver(r, NULL, n, data);
    else pt_report_exception(env);
  }
  /* JS may have stopped the reader inside the callback. */
  if (err != 0 && !r->stopped) {
    /* A read error (device deleted: EBADFD/EIO…) ends reading; JS decides
     * what to do and calls tunReaderStop. */
    uv_poll_stop(&r->poll);
    napi_value e = pt_errno_error(env, err, "read", NULL);
    if (e != NULL) deliver(r, e, 0, pt_undefined(env));
  }
  napi_close_handle_scope(env, scope);
}

static napi_value new_uint32_view(napi_env env, uint32_t count, void **data, napi_value *ab) {
  napi_value view;
  if (napi_create_arraybuffer(env, (size_t)count * 4, data, ab) != napi_ok) return NULL;
  if (napi_create_typedarray(env, napi_uint32_array, count, *ab, 0, &view) != napi_ok) return NULL;
  return view;
}

/* tunReaderStart(fd, mode, batch, slot, cb(err, count, data), maxBytes?) → { handle, lens, shared? } */
static napi_value reader_start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  int32_t fd, mode, batch, slot, max_bytes = 0;
  napi_valuetype t = napi_undefined;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !pt_arg_int32(env, argv[0], &fd) || !pt_arg_int32(env, argv[1], &mode) ||
      !pt_arg_int32(env, argv[2], &batch) || !pt_arg_int32(env, argv[3], &slot) ||
      napi_typeof(env, argv[4], &t) != napi_ok || t != napi_function || mode < 0 || mode > 2 || batch < 1 ||
      batch > 4096 || slot < 64 || slot > 65536 + 64) {
    return pt_throw_type(env, "tunReaderStart(fd, mode 0-2, batch 1-4096, slot 64-65600, callback)");
  }
  if (argc >= 6 && !pt_is_nullish(env, argv[5]) && (!pt_arg_int32(env, argv[5], &max_bytes) || max_bytes < 1)) {
    return pt_throw_type(env, "tunReaderStart: maxBytes must be a positive number");
  }
  reader_t *r = calloc(1, sizeof *r);
  if (r == NULL) return pt_throw_errno(env, ENOMEM, "tunReaderStart", NULL);
  r->magic = READER_MAGIC;
  r->env = env;
  r->fd = fd;
  r->mode = mode;
  r->batch = (uint32_t)batch;
  r->slot = (uint32_t)slot;
  r->max_bytes = max_bytes > 0 ? (size_t)max_bytes : SIZE_MAX;
  r->refs = 1; /* the uv handle's; the external's is added below */

  napi_value result, lens_ab, lens, handle, name;
  void *lens_data = NULL, *shared = NULL;
  bool ok = napi_create_object(env, &result) == napi_ok &&
            (lens = new_uint32_view(env, r->batch + 1, &lens_data, &lens_ab)) != NULL &&
            napi_set_named_property(env, result, "lens", lens) == napi_ok;
  r->lens = lens_data;
  if (ok && mode == MODE_SHARED) {
    napi_value view;
    ok = napi_create_buffer(env, (size_t)r->batch * r->slot, &shared, &view) == napi_ok &&
         napi_set_named_property(env, result, "shared", view) == napi_ok;
    r->buf = shared;
  } else if (ok) {
    r->buf = malloc((size_t)r->batch * r->slot);
    ok = r->buf != NULL;
  }
  ok = ok && napi_create_string_utf8(env, "polytun:TunReader", NAPI_AUTO_LENGTH, &name) == napi_ok &&
       napi_async_init(env, result, name, &r->ctx) == napi_ok;
  if (!ok) {
    if (mode != MODE_SHARED) free(r->buf);
    free(r);
    pt_throw_last(env, "tunReaderStart setup");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  int rc = napi_get_uv_event_loop(env, &loop) == napi_ok ? uv_poll_init(loop, &r->poll, fd) : UV_EINVAL;
  if (rc < 0) {
    napi_async_destroy(env, r->ctx);
    if (mode != MODE_SHARED) free(r->buf);
    free(r);
    return pt_throw_errno(env, -rc, "uv_poll_init", NULL);
  }
  r->poll.data = r;
  /* From here on the handle exists and must be closed through uv_close. */
  napi_create_reference(env, argv[4], 1, &r->cb);
  napi_create_reference(env, result, 1, &r->resource);
  napi_add_env_cleanup_hook(env, on_env_teardown, r);
  rc = uv_poll_start(&r->poll, UV_READABLE, on_readable);
  if (rc < 0) {
    reader_stop(r);
    return pt_throw_errno(env, -rc, "uv_poll_start", NULL);
  }
  if (napi_create_external(env, r, on_external_gc, NULL, &handle) != napi_ok ||
      napi_set_named_property(env, result, "handle", handle) != napi_ok) {
    reader_stop(r);
    pt_throw_last(env, "tunReaderStart handle");
    return NULL;
  }
  r->refs++;
  return result;
}

/* tunReaderStop(handle): stops polling; idempotent. Does not close the fd. */
static napi_value reader_stop_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL ||
      ((reader_t *)data)->magic != READER_MAGIC) {
    return pt_throw_type(env, "tunReaderStop(handle): not a reader handle");
  }
  reader_stop(data);
  return pt_undefined(env);
}

bool pt_init_tun_reader(napi_env env, napi_value exports) {
  return pt_export(env, exports, "tunReaderStart", reader_start) &&
         pt_export(env, exports, "tunReaderStop", reader_stop_js);
}
