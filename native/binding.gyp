# polytun's native addon: TUN devices, socket options before connect
# (SO_BINDTODEVICE, SO_MARK, local bind) and MPTCP sockets, none of which
# Node exposes, and in-place ChaCha20-Poly1305 for the record layer (with
# the OpenSSL linked into Node). Plain C against N-API (ABI-stable across Node versions) and
# the libuv that Node itself exports. Linux only.
{
  "targets": [
    {
      "target_name": "polytun_native",
      "sources": [
        "src/addon.c",
        "src/errors.c",
        "src/tun_open.c",
        "src/tun_reader.c",
        "src/sock_connect.c",
        "src/sock_info.c",
        "src/aead.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"]
    }
  ]
}
