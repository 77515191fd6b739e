/*
 * ChaCha20-Poly1305 (RFC 8439) and AES-256-GCM (NIST SP 800-38D) sealing and
 * opening in place, for the record
 * layer's hot path. node:crypto needs a cipher object, five calls and three
 * fresh buffers per record (ciphertext, tag, the object itself); here one
 * call encrypts a record where it lies and writes the tag after it, so the
 * record layer can build a whole record in one reused buffer and hand the
 * socket a single write.
 *
 * The cipher is OpenSSL's, the copy linked into Node (its EVP symbols are
 * exported by the node binary; the headers ship in include/node/openssl),
 * so results are byte-identical to node:crypto and no library is added.
 *
 * aeadCreate(key32, encrypt[, alg]) → handle (one EVP context, keyed once;
 *   each record only resets the nonce). alg 0 (the default) is
 *   ChaCha20-Poly1305, 1 is AES-256-GCM: both take a 32-byte key, a 12-byte
 *   nonce and give a 16-byte tag, so everything below serves both.
 * aeadSeal(handle, src, srcOff, len, dst, dstOff, aad16, nonceLo, nonceHi):
 *   encrypts src[srcOff, +len) into dst[dstOff, +len) (in place when they
 *   are the same bytes) and writes the 16-byte tag after it.
 * aeadOpen(handle, buf, off, len, aad16, nonceLo, nonceHi) → boolean:
 *   checks the tag at buf[off+len] and decrypts buf[off, off+len) in place;
 *   false (and the plaintext must not be used) when authentication fails.
 * aeadOpenv(handle, dst, dstOff, len, aad16, nonceLo, nonceHi, tag, segs):
 *   the same for a ciphertext that lies in several buffers, into dst.
 *
 * The nonce is 4 zero bytes || nonceHi:nonceLo as a little-endian u64
 * (Noise's ChaChaPoly nonce, used for both ciphers: for GCM any 12 bytes
 * that never repeat under one key will do); the associated data is the 2-byte big-endian
 * aad16 (the record's masked length).
 */
#include "polytun.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define PT_AEAD_TAG 16
#define PT_AEAD_CHACHA20_POLY1305 0
#define PT_AEAD_AES_256_GCM 1

typedef struct {
  EVP_CIPHER_CTX *ctx;
  int encrypt;
} pt_aead;

static void aead_finalize(napi_env env, void *data, void *hint) {
  pt_aead *a = data;
  EVP_CIPHER_CTX_free(a->ctx);
  free(a);
}

static napi_value aead_create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], handle;
  void *key;
  size_t keylen;
  bool encrypt;
  bool is_buffer = false;
  uint32_t alg = PT_AEAD_CHACHA20_POLY1305;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return pt_throw_type(env, "aeadCreate(key, encrypt, alg): at least two arguments expected");
  PT_CALL(env, napi_is_buffer(env, argv[0], &is_buffer));
  if (!is_buffer) return pt_throw_type(env, "aeadCreate: key must be a Buffer");
  PT_CALL(env, napi_get_buffer_info(env, argv[0], &key, &keylen));
  if (keylen != 32) return pt_throw_type(env, "aeadCreate: key must be 32 bytes");
  PT_CALL(env, napi_get_value_bool(env, argv[1], &encrypt));
  if (argc >= 3 && napi_get_value_uint32(env, argv[2], &alg) != napi_ok) return pt_throw_type(env, "aeadCreate: alg must be a number");
  if (alg != PT_AEAD_CHACHA20_POLY1305 && alg != PT_AEAD_AES_256_GCM) return pt_throw_type(env, "aeadCreate: alg must be 0 (chacha20-poly1305) or 1 (aes-256-gcm)");
  const EVP_CIPHER *cipher = alg == PT_AEAD_AES_256_GCM ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
  pt_aead *a = calloc(1, sizeof *a);
  if (a == NULL) return pt_throw_errno(env, ENOMEM, "calloc", "out of memory");
  a->encrypt = encrypt ? 1 : 0;
  a->ctx = EVP_CIPHER_CTX_new();
  if (a->ctx == NULL || EVP_CipherInit_ex(a->ctx, cipher, NULL, key, NULL, a->encrypt) != 1) {
    if (a->ctx) EVP_CIPHER_CTX_free(a->ctx);
    free(a);
    return pt_throw_type(env, alg == PT_AEAD_AES_256_GCM ? "aeadCreate: OpenSSL refused to set up aes-256-gcm" : "aeadCreate: OpenSSL refused to set up chacha20-poly1305");
  }
  if (napi_create_external(env, a, aead_finalize, NULL, &handle) != napi_ok) {
    EVP_CIPHER_CTX_free(a->ctx);
    free(a);
    pt_throw_last(env, "napi_create_external");
    return NULL;
  }
  return handle;
}

/* Reads a Buffer argument and checks that [off, off+len+extra) lies inside it,
 * so JS cannot make us touch memory outside its buffers. */
static bool aead_buffer(napi_env env, napi_value v, napi_value voff, uint32_t len, uint32_t extra, uint8_t **p) {
  void *data;
  size_t cap;
  uint32_t off;
  if (napi_get_buffer_info(env, v, &data, &cap) != napi_ok || napi_get_value_uint32(env, voff, &off) != napi_ok) {
    pt_throw_type(env, "aead: a Buffer and an offset expected");
    return false;
  }
  if ((uint64_t)off + len + extra > cap) {
    pt_throw_type(env, "aead: record does not fit in the buffer");
    return false;
  }
  *p = (uint8_t *)data + off;
  return true;
}

/* The handle, the aad and the nonce from argv[first..first+3) = (aad16, lo, hi). */
static bool aead_common(napi_env env, napi_value *argv, size_t first, int want_encrypt, pt_aead **a, uint8_t aad[2],
                        uint8_t nonce[12]) {
  uint32_t aad16, lo, hi;
  if (napi_get_value_external(env, argv[0], (void **)a) != napi_ok || *a == NULL) {
    pt_throw_type(env, "aead: first argument must be an aead handle");
    return false;
  }
  if ((*a)->encrypt != want_encrypt) {
    pt_throw_type(env, want_encrypt ? "aeadSeal: handle was created for opening" : "aeadOpen: handle was created for sealing");
    return false;
  }
  if (napi_get_value_uint32(env, argv[first], &aad16) != napi_ok || napi_get_value_uint32(env, argv[first + 1], &lo) != napi_ok ||
      napi_get_value_uint32(env, argv[first + 2], &hi) != napi_ok) {
    pt_throw_type(env, "aead: aad16, nonceLo and nonceHi must be numbers");
    return false;
  }
  aad[0] = (uint8_t)(aad16 >> 8);
  aad[1] = (uint8_t)aad16;
  memset(nonce, 0, 4);
  for (int i = 0; i < 4; i++) {
    nonce[4 + i] = (uint8_t)(lo >> (8 * i));
    nonce[8 + i] = (uint8_t)(hi >> (8 * i));
  }
  return true;
}

/* aeadSeal(handle, src, srcOff, len, dst, dstOff, aad16, nonceLo, nonceHi):
 * ciphertext of src[srcOff, +len) to dst[dstOff, +len), tag after it. src and
 * dst may be the same bytes (in place), but must not overlap otherwise. */
static napi_value aead_seal(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  pt_aead *a;
  uint8_t *src, *dst, aad[2], nonce[12];
  uint32_t len;
  int n;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 9) return pt_throw_type(env, "aeadSeal: nine arguments expected");
  if (napi_get_value_uint32(env, argv[3], &len) != napi_ok || len > 0x7fffffff) return pt_throw_type(env, "aeadSeal: bad length");
  if (!aead_common(env, argv, 6, 1, &a, aad, nonce) || !aead_buffer(env, argv[1], argv[2], len, 0, &src) ||
      !aead_buffer(env, argv[4], argv[5], len, PT_AEAD_TAG, &dst)) {
    return NULL;
  }
  if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 1) != 1 || EVP_CipherUpdate(a->ctx, NULL, &n, aad, 2) != 1 ||
      (len > 0 && EVP_CipherUpdate(a->ctx, dst, &n, src, (int)len) != 1) || EVP_CipherFinal_ex(a->ctx, dst + len, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, PT_AEAD_TAG, dst + len) != 1) {
    return pt_throw_type(env, "aeadSeal: OpenSSL failed");
  }
  return NULL;
}

/* aeadOpen(handle, buf, off, len, aad16, nonceLo, nonceHi) → boolean: checks
 * the tag at buf[off+len] and decrypts buf[off, +len) in place. */
static napi_value aead_open(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], result;
  pt_aead *a;
  uint8_t *p, aad[2], nonce[12];
  uint32_t len;
  int n;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7) return pt_throw_type(env, "aeadOpen: seven arguments expected");
  if (napi_get_value_uint32(env, argv[3], &len) != napi_ok || len > 0x7fffffff) return pt_throw_type(env, "aeadOpen: bad length");
  if (!aead_common(env, argv, 4, 0, &a, aad, nonce) || !aead_buffer(env, argv[1], argv[2], len, PT_AEAD_TAG, &p)) return NULL;
  bool ok = EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 0) == 1 && EVP_CipherUpdate(a->ctx, NULL, &n, aad, 2) == 1 &&
            (len == 0 || EVP_CipherUpdate(a->ctx, p, &n, p, (int)len) == 1) &&
            EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, PT_AEAD_TAG, p + len) == 1 &&
            EVP_CipherFinal_ex(a->ctx, p + len, &n) == 1;
  PT_CALL(env, napi_get_boolean(env, ok, &result));
  return result;
}

/* aeadOpenv(handle, dst, dstOff, len, aad16, nonceLo, nonceHi, tag, segments)
 * → boolean: the ciphertext is the concatenation of `segments` (Buffers,
 * `len` bytes in all; a record that arrived split across socket reads),
 * decrypted into dst[dstOff, +len) without first gathering it. */
static napi_value aead_openv(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9], result, seg;
  pt_aead *a;
  uint8_t *dst, *tag, aad[2], nonce[12];
  uint32_t len, nseg, done = 0;
  int n;
  bool is_array = false;
  PT_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 9) return pt_throw_type(env, "aeadOpenv: nine arguments expected");
  if (napi_get_value_uint32(env, argv[3], &len) != napi_ok || len > 0x7fffffff) return pt_throw_type(env, "aeadOpenv: bad length");
  if (!aead_common(env, argv, 4, 0, &a, aad, nonce) || !aead_buffer(env, argv[1], argv[2], len, 0, &dst)) return NULL;
  {
    void *t;
    size_t tlen;
    if (napi_get_buffer_info(env, argv[7], &t, &tlen) != napi_ok || tlen < PT_AEAD_TAG) return pt_throw_type(env, "aeadOpenv: tag must be a 16-byte Buffer");
    tag = t;
  }
  PT_CALL(env, napi_is_array(env, argv[8], &is_array));
  if (!is_array) return pt_throw_type(env, "aeadOpenv: segments must be an array of Buffers");
  PT_CALL(env, napi_get_array_length(env, argv[8], &nseg));
  bool ok = EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 0) == 1 && EVP_CipherUpdate(a->ctx, NULL, &n, aad, 2) == 1;
  for (uint32_t i = 0; ok && i < nseg; i++) {
    void *sp;
    size_t slen;
    PT_CALL(env, napi_get_element(env, argv[8], i, &seg));
    if (napi_get_buffer_info(env, seg, &sp, &slen) != napi_ok) return pt_throw_type(env, "aeadOpenv: segments must be Buffers");
    if ((uint64_t)done + slen > len) return pt_throw_type(env, "aeadOpenv: segments are longer than len");
    if (slen > 0) ok = EVP_CipherUpdate(a->ctx, dst + done, &n, sp, (int)slen) == 1;
    done += (uint32_t)slen;
  }
  if (done != len) return pt_throw_type(env, "aeadOpenv: segments are shorter than len");
  uint8_t fin[32]; /* final writes nothing for either AEAD (both are stream modes); room anyway */
  ok = ok && EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, PT_AEAD_TAG, tag) == 1 && EVP_CipherFinal_ex(a->ctx, fin, &n) == 1;
  PT_CALL(env, napi_get_boolean(env, ok, &result));
  return result;
}

bool pt_init_aead(napi_env env, napi_value exports) {
  /* How many algorithms aeadCreate knows: an addon built before AES-GCM
   * ignores the alg argument, so JS must not trust it blindly. */
  napi_value algs;
  if (napi_create_uint32(env, 2, &algs) != napi_ok || napi_set_named_property(env, exports, "aeadAlgorithms", algs) != napi_ok) return false;
  return pt_export(env, exports, "aeadCreate", aead_create) && pt_export(env, exports, "aeadSeal", aead_seal) &&
         pt_export(env, exports, "aeadOpen", aead_open) && pt_export(env, exports, "aeadOpenv", aead_openv);
}
