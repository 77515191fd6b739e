/**
 * The error catalogue: every stable code polytun reports, the class that
 * carries it and what it means. A code is a promise to users and their log
 * searches; it never changes meaning between releases. `PolytunError` takes
 * only codes listed here, and `test/unit/core/error-codes.test.ts` checks
 * that every error class in src/ is listed and that no two classes share a
 * code.
 *
 * The classes themselves live beside the code that throws them (a carrier's
 * DialError in carriers/errors.ts, the store's StoreError in store/types.ts);
 * the general ones are in core/errors.ts.
 */
export const ERROR_CODES = {
  // core/errors.ts — general
  ERR_PROTOCOL: { classes: ['ProtocolError', 'AddressError', 'HttpProxyError', 'Socks5Error'], meaning: 'a peer sent bytes that break the protocol (frame, length, field, address, SOCKS5 or HTTP proxy request)' },
  ERR_LIMIT: { classes: ['LimitError'], meaning: 'a configured limit was exceeded (frame size, buffered bytes, stream count)' },
  ERR_AUTH: { classes: ['AuthError', 'CertificateError'], meaning: 'authentication or decryption failed, or the server certificate did not match its pin' },
  ERR_REJECTED: { classes: ['RejectedError'], meaning: 'the server rejected the session with a typed reject code' },
  ERR_TIMEOUT: { classes: ['TimeoutError'], meaning: 'an operation did not finish in its time' },
  ERR_CLOSED: { classes: ['ClosedError'], meaning: 'the object (session, path, stream, listener) is closed' },
  ERR_ABORTED: { classes: ['AbortedError'], meaning: 'the caller aborted the operation (AbortSignal)' },
  ERR_STREAM_RESET: { classes: ['StreamResetError'], meaning: 'a stream was reset by this side or the peer, with a wire code' },
  ERR_CONFIG: { classes: ['ConfigError', 'ConfigValidationError'], meaning: 'a config value, flag or link is invalid; the message names where' },
  // carriers
  ERR_DIAL: { classes: ['DialError'], meaning: 'dialing a carrier failed (errno in the message)' },
  ERR_LISTEN: { classes: ['ListenError'], meaning: 'listening on an address failed (in use, no permission)' },
  ERR_CONN_RESET: { classes: ['ConnectionResetError'], meaning: 'the peer reset the connection' },
  ERR_WS_UPGRADE: { classes: ['WsUpgradeError'], meaning: 'the server refused the WebSocket upgrade (HTTP status in the message)' },
  ERR_SOCKET_OPTION: { classes: ['SocketOptionError'], meaning: 'a socket option (MPTCP, interface binding, mark) could not be set' },
  // secure, session
  ERR_HANDSHAKE_DROPPED: { classes: ['SilentDropError'], meaning: 'the server dropped a handshake without answering (probe resistance): wrong key, replay, garbage' },
  ERR_SESSION_CLOSED: { classes: ['SessionClosedError'], meaning: 'the session was closed, by this side or the peer, with a close code' },
  // client
  ERR_UNREACHABLE: { classes: ['UnreachableError'], meaning: 'the client gave up reaching the server (--retry N spent)' },
  ERR_REFUSED: { classes: ['RefusedError'], meaning: 'the server refused this client (kicked, quota, expired, unknown key) and the client stopped retrying' },
  ERR_PROXY_STATUS: { classes: ['ProxyStatusError'], meaning: 'the server refused a CONNECT, bind or UDP request with a status' },
  ERR_VPN_REFUSED: { classes: ['VpnRefusedError'], meaning: 'the server refused VPN mode' },
  ERR_NOT_OFFERED: { classes: ['NotOfferedError'], meaning: 'the server does not offer what was asked (a speed test, its view of our address): it predates it' },
  // server, admin, store
  ERR_EGRESS: { classes: ['EgressError'], meaning: 'the server could not or would not dial a destination (policy, DNS, connect)' },
  ERR_ADMIN_INVALID: { classes: ['AdminInputError'], meaning: 'an admin API request has an invalid field' },
  ERR_MTT_UNDECODABLE: { classes: ['Undecodable'], meaning: 'an mtt controller body did not decode (answered with an empty 200, as mtt does)' },
  ERR_STORE_CONFLICT: { classes: ['StoreError'], meaning: 'another user already holds a unique field (name, key, path)' },
  ERR_STORE_NOT_FOUND: { classes: ['StoreError'], meaning: 'no such user' },
  ERR_STORE_INVALID: { classes: ['StoreError'], meaning: 'a user record is invalid' },
  ERR_STORE_BACKEND: { classes: ['StoreError'], meaning: 'the database failed (disk full, read-only, connection lost)' },
  // system: native addon, TUN, routes
  ERR_NATIVE_UNAVAILABLE: { classes: ['NativeUnavailableError'], meaning: 'a feature needs the native addon, which is not built' },
  ERR_TUN: { classes: ['TunError'], meaning: 'opening, reading or writing a TUN device failed' },
  ERR_IPROUTE: { classes: ['IprouteError'], meaning: 'an `ip` command failed' },
  ERR_SYSTEM_CHANGE: { classes: ['SystemChangeError'], meaning: 'a system change for the VPN (route, address, sysctl) failed' },
  // cli
  ERR_DEMO: { classes: ['DemoError'], meaning: '`polytun demo` could not run its tunnel' },
  ERR_PROVISION: { classes: ['ProvisionError'], meaning: 'fetching a configuration from a server (`/token`, `/config`) failed' },
  ERR_STATUS_UNAVAILABLE: { classes: ['StatusUnavailableError'], meaning: '`polytun status` found no running client or server to ask' },
  // the project's own tools (bench/, test/lab/), not the polytun command
  ERR_BENCH_PEER: { classes: ['BenchPeerError'], meaning: 'a benchmark could not start or use a peer program (shadowsocks, iperf3, mtt)' },
  ERR_LAB: { classes: ['LabError'], meaning: 'the network-namespace lab could not set up a host, link or NAT' },
} as const satisfies Record<string, { classes: readonly string[]; meaning: string }>;

/** A stable error code (see {@link ERROR_CODES}). */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Classes that carry a code chosen by their caller rather than one of their own. */
export const CODE_FAMILY_CLASSES = ['PolytunError', 'SyscallError', 'StoreError'] as const;
