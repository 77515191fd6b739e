/**
 * Request schemas of the admin REST API (TypeBox, checked by http.ts) and the
 * JSON form of a user. The limits mirror the store's own checks so that most
 * bad input is refused here with the field named, before any database work.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { User } from '../store/types.js';

const Nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Integer>>(t: T) => Type.Union([t, Type.Null()]);

/** Per-user destination policy overrides. */
export const PolicySchema = Type.Object(
  {
    allow: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 300 }), { maxItems: 1000 })),
    deny: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 300 }), { maxItems: 1000 })),
  },
  { additionalProperties: false },
);

/** A token credential: base64url so that it fits in links. */
const TokenText = Type.String({ pattern: '^[A-Za-z0-9_-]{16,256}$' });
/** A 32-byte key as unpadded base64url. */
const KeyText = Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' });
/** A URL path, or 'auto' for a generated `/u/<128-bit hex>`. */
const WssPath = Nullable(Type.String({ minLength: 1, maxLength: 256 }));
const Dst = Nullable(Type.String({ minLength: 3, maxLength: 300 }));
const Count = Nullable(Type.Integer({ minimum: 0 }));
const Password = Type.String({ minLength: 8, maxLength: 256 });

/** Bytes per second (1 kB/s to 1 TB/s), or null for no per-user cap. */
const UdpRate = Type.Union([Type.Integer({ minimum: 1000, maximum: 1e12 }), Type.Null()]);

/** Body of `POST /api/users`. */
export const CreateUserSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    kind: Type.Union([Type.Literal('key'), Type.Literal('token')]),
    /** kind 'token': the token to use instead of a generated one. */
    token: Type.Optional(TokenText),
    /** kind 'key': the client's public key alone (it keeps its private key; the server then has no link to give). */
    publicKey: Type.Optional(KeyText),
    /**
     * The user's ws/wss URL path: 'auto' for a generated one, null for none.
     * Absent: generated when the server has a ws/wss listener the user could
     * not use otherwise (every key user; token users only without a shared token path).
     */
    wssPath: Type.Optional(WssPath),
    dst: Type.Optional(Dst),
    policy: Type.Optional(PolicySchema),
    quotaBytes: Type.Optional(Count),
    /** ms since the epoch. */
    expiresAt: Type.Optional(Count),
    enabled: Type.Optional(Type.Boolean()),
    /**
     * mtt compatibility mode: stock mtt-clients (-wss, with or without -mux)
     * reach `dst` through `wssPath` with no polytun handshake. The path is
     * then the ONLY secret (no polytun authentication, no forward secrecy
     * beyond TLS, no probe resistance on that path). Needs wssPath and dst.
     */
    mtt: Type.Optional(Type.Boolean()),
    /**
     * The highest fixed rate, bytes per second, this user's udp clients may
     * make the server send at (`--cc fixed:RATE`); null or absent: only the
     * server's udp.maxRate caps it.
     */
    udpMaxRate: Type.Optional(UdpRate),
    /** Password for `POST /token` of provisioning. */
    provisionPassword: Type.Optional(Password),
  },
  { additionalProperties: false },
);
export type CreateUserBody = Static<typeof CreateUserSchema>;

/** Body of `PATCH /api/users/:id`: only the fields present change. */
export const PatchUserSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    wssPath: Type.Optional(WssPath),
    dst: Type.Optional(Dst),
    policy: Type.Optional(PolicySchema),
    quotaBytes: Type.Optional(Count),
    expiresAt: Type.Optional(Count),
    enabled: Type.Optional(Type.Boolean()),
    /** mtt compatibility mode (see the create body). */
    mtt: Type.Optional(Type.Boolean()),
    /** Per-user cap of a udp client's fixed rate (see the create body); null removes it. */
    udpMaxRate: Type.Optional(UdpRate),
    /** Sets the traffic counters back to 0. */
    resetTraffic: Type.Optional(Type.Boolean()),
    /** Issues a new key or token (same kind); the reply carries it once. */
    rekey: Type.Optional(Type.Boolean()),
    /**
     * Makes the user a token user with this token ('auto': a generated one),
     * replacing its key or token; the reply carries it once. A token user is
     * selected on the shared ws/wss token path by its client's bearer value.
     */
    token: Type.Optional(Type.Union([TokenText, Type.Literal('auto')])),
    /** Sets (string) or removes (null) the provisioning password. */
    provisionPassword: Type.Optional(Type.Union([Password, Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type PatchUserBody = Static<typeof PatchUserSchema>;

/** Query of `GET /api/users`. */
export const ListQuerySchema = Type.Object(
  {
    /** @default 100 */
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    /** @default 0 */
    offset: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Keyset paging: users created after this id (the `next` of the previous page). */
    after: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type ListQuery = Static<typeof ListQuerySchema>;

/** Query of `DELETE /api/users/:id`. */
export const DeleteQuerySchema = Type.Object(
  {
    /** Close the user's live sessions too. @default true (false: they go on until they end; the reply's liveSessions counts them) */
    kick: Type.Optional(Type.Boolean({ default: true })),
  },
  { additionalProperties: false },
);
export type DeleteQuery = Static<typeof DeleteQuerySchema>;

/** Query of `GET /api/sessions`. */
export const SessionsQuerySchema = Type.Object({ user: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })) }, { additionalProperties: false });
export type SessionsQuery = Static<typeof SessionsQuerySchema>;

/** Query of the traffic history routes. Times are ms since the epoch. */
export const HistoryQuerySchema = Type.Object(
  {
    /** First bucket: the one holding this time. @default to − 24 h */
    from: Type.Optional(Type.Integer({ minimum: 0 })),
    /** End, exclusive. @default now */
    to: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Bucket width in seconds: 60 (kept 7 days) or 3600 (kept 90 days). @default 60 */
    res: Type.Optional(Type.Union([Type.Literal(60), Type.Literal(3600)])),
  },
  { additionalProperties: false },
);
export type HistoryQuery = Static<typeof HistoryQuerySchema>;

/** A user as the API shows it: the store's User, never its secret, the key as text. */
export interface UserJson extends Omit<User, 'publicKey' | 'secret'> {
  /** base64url. */
  readonly publicKey: string;
  /** True when the user has a provisioning password. */
  readonly provisioning: boolean;
}

/** The JSON form of `u`. */
export function userJson(u: User, hasPassword: boolean): UserJson {
  return {
    id: u.id,
    name: u.name,
    kind: u.kind,
    publicKey: u.publicKey.toString('base64url'),
    wssPath: u.wssPath,
    dst: u.dst,
    policy: u.policy,
    quotaBytes: u.quotaBytes,
    expiresAt: u.expiresAt,
    enabled: u.enabled,
    mtt: u.mtt,
    udpMaxRate: u.udpMaxRate,
    createdAt: u.createdAt,
    updatedAt: u.updatedAt,
    bytesUp: u.bytesUp,
    bytesDown: u.bytesDown,
    provisioning: hasPassword,
  };
}
