import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, ApiError, type User } from './api';
import { bytes, when } from './format';
import { UserDetail } from './user-detail';

const PAGE = 20;

const GiB = 1024 ** 3;

/** A quota field's value (GiB, may be empty) as bytes or null. */
export function quotaBytes(v: string): number | null {
  const t = v.trim();
  if (t === '') return null;
  const n = Number(t);
  if (!Number.isFinite(n) || n < 0) throw new ApiError(400, 'invalid', 'Quota: a number of GiB, or empty for none', 'quotaBytes');
  return Math.round(n * GiB);
}

/** A Mbit/s field's value as bytes per second, or null for none (the API's udpMaxRate). */
export function udpRate(v: string): number | null {
  const t = v.trim();
  if (t === '') return null;
  const n = Number(t);
  if (!Number.isFinite(n) || n < 0.008 || n > 8_000_000) throw new ApiError(400, 'invalid', 'UDP cap: a number of Mbit/s from 0.008, or empty for none', 'udpMaxRate');
  return Math.round((n * 1e6) / 8);
}

/** A date field's value as ms (end of that day, UTC) or null. */
export function expiryMs(v: string): number | null {
  return v === '' ? null : Date.parse(`${v}T23:59:59Z`);
}

export function quotaText(q: number | null): string {
  return q === null ? '' : String(Math.round((q / GiB) * 1000) / 1000);
}

function message(err: unknown): string {
  return err instanceof ApiError ? err.message : String(err);
}

/** Users: a page of the list, the create form, and the selected user. */
export function Users() {
  const [users, setUsers] = useState<User[]>([]);
  const [total, setTotal] = useState(0);
  const [offset, setOffset] = useState(0);
  const [selected, setSelected] = useState<string | null>(null);
  const [created, setCreated] = useState<{ id: string; links: string[] } | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const r = await api<{ users: User[]; total: number }>('GET', `/api/users?limit=${PAGE}&offset=${offset}`);
      setUsers(r.users);
      setTotal(r.total);
      setError(null);
    } catch (err) {
      setError(message(err));
    }
  }, [offset]);

  useEffect(() => {
    void load();
  }, [load]);

  // The create form.
  const [name, setName] = useState('');
  const [kind, setKind] = useState<'key' | 'token'>('key');
  const [quota, setQuota] = useState('');
  const [expiry, setExpiry] = useState('');
  const [formError, setFormError] = useState<string | null>(null);

  const create = async (e: Event) => {
    e.preventDefault();
    setFormError(null);
    try {
      const q = quotaBytes(quota);
      const x = expiryMs(expiry);
      const r = await api<{ user: User; links: string[] }>('POST', '/api/users', { name: name.trim(), kind, ...(q === null ? {} : { quotaBytes: q }), ...(x === null ? {} : { expiresAt: x }) });
      setName('');
      setQuota('');
      setExpiry('');
      setCreated({ id: r.user.id, links: r.links });
      setSelected(r.user.id);
      await load();
    } catch (err) {
      setFormError(message(err));
    }
  };

  const last = Math.min(total, offset + users.length);
  return (
    <section aria-labelledby="users-h">
      <h2 id="users-h">Users</h2>
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="users-layout">
        <div>
          <div class="table-wrap">
            <table class="users">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Kind</th>
                  <th scope="col">State</th>
                  <th scope="col">Traffic</th>
                  <th scope="col">Quota</th>
                  <th scope="col">Expires</th>
                </tr>
              </thead>
              <tbody>
                {users.map((u) => (
                  <tr key={u.id} class={u.id === selected ? 'selected' : undefined} data-user={u.id}>
                    <td data-label="Name">
                      <button type="button" class="link" aria-pressed={u.id === selected} onClick={() => setSelected(u.id)}>
                        {u.name}
                      </button>
                    </td>
                    <td data-label="Kind">{u.kind}</td>
                    <td data-label="State">{u.enabled ? 'enabled' : 'disabled'}</td>
                    <td data-label="Traffic">{bytes(u.bytesUp + u.bytesDown)}</td>
                    <td data-label="Quota">{u.quotaBytes === null ? '–' : bytes(u.quotaBytes)}</td>
                    <td data-label="Expires">{u.expiresAt === null ? '–' : when(u.expiresAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav class="pager" aria-label="Pages of users">
            <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
              Previous
            </button>
            <span>{total === 0 ? 'no users' : `${offset + 1}–${last} of ${total}`}</span>
            <button type="button" disabled={last >= total} onClick={() => setOffset(offset + PAGE)}>
              Next
            </button>
          </nav>
          <form class="card" onSubmit={(e) => void create(e)} aria-labelledby="create-h">
            <h3 id="create-h">New user</h3>
            <label for="new-name">Name</label>
            <input id="new-name" required maxLength={128} value={name} onInput={(e) => setName(e.currentTarget.value)} />
            <label for="new-kind">Credential</label>
            <select id="new-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value as 'key' | 'token')}>
              <option value="key">key (X25519 key pair)</option>
              <option value="token">token</option>
            </select>
            <label for="new-quota">Quota, GiB (empty: none)</label>
            <input id="new-quota" inputMode="decimal" value={quota} onInput={(e) => setQuota(e.currentTarget.value)} />
            <label for="new-expiry">Expires on (empty: never)</label>
            <input id="new-expiry" type="date" value={expiry} onInput={(e) => setExpiry(e.currentTarget.value)} />
            {formError !== null && (
              <p class="error" role="alert">
                {formError}
              </p>
            )}
            <button type="submit">Create user</button>
          </form>
        </div>
        {selected !== null && (
          <UserDetail
            key={selected}
            id={selected}
            fresh={created?.id === selected ? created.links : null}
            onChanged={() => void load()}
            onDeleted={() => {
              setSelected(null);
              void load();
            }}
          />
        )}
      </div>
    </section>
  );
}
