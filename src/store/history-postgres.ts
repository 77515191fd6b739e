/**
 * The traffic history on PostgreSQL, on the user store's pool. A fleet
 * shares the tables: each server adds to its own rows (`node`), so batches
 * of different servers never wait on each other, and every query sums over
 * the nodes (the fleet's view). Buckets are timestamptz; the API speaks ms.
 */
import type pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
import type { HistoryBatch, HistoryPoint, HistoryStore, PruneBefore, Resolution, SeriesKind } from './history-types.js';

/** What PostgresStore lends the history. */
export interface PgAccess {
  /** One query (on `client` when given), errors turned into StoreError. */
  q<R extends QueryResultRow>(sql: string, params: unknown[], client?: PoolClient): Promise<pg.QueryResult<R>>;
  /** Runs `fn` inside BEGIN … COMMIT on one pooled connection (ROLLBACK when it throws). */
  tx<T>(fn: (client: PoolClient) => Promise<T>): Promise<T>;
}

const ms = (param: string): string => `to_timestamp(${param}::int8 / 1000.0)`;
const AT = '(extract(epoch FROM bucket) * 1000)::int8';

type Row = { at: string; up: string; down: string };
const point = (r: Row): HistoryPoint => ({ at: Number(r.at), up: Number(r.up), down: Number(r.down) });

/** The PostgreSQL backend of {@link HistoryStore}. */
export class PostgresHistory implements HistoryStore {
  constructor(private readonly a: PgAccess) {}

  async addBatch(batch: HistoryBatch): Promise<boolean> {
    const r = batch.rows;
    return this.a.tx(async (client) => {
      const mark = await this.a.q(`INSERT INTO traffic_history_batches (node, batch, applied_at) VALUES ($1, $2, ${ms('$3')}) ON CONFLICT DO NOTHING`, [batch.node, batch.id, batch.at], client);
      if (mark.rowCount === 0) return false;
      await this.a.q(
        `INSERT INTO traffic_history (kind, series_id, resolution, bucket, node, bytes_up, bytes_down)
         SELECT t.kind, t.id, t.res, to_timestamp(t.bucket / 1000.0), $7, t.up, t.down
         FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::int8[], $6::int8[]) WITH ORDINALITY AS t(kind, id, res, bucket, up, down, n)
         ORDER BY t.n
         ON CONFLICT (kind, series_id, resolution, bucket, node) DO UPDATE
           SET bytes_up = traffic_history.bytes_up + excluded.bytes_up, bytes_down = traffic_history.bytes_down + excluded.bytes_down`,
        [r.map((x) => x.kind), r.map((x) => x.id), r.map((x) => x.resolution), r.map((x) => x.bucket), r.map((x) => x.up), r.map((x) => x.down), batch.node],
        client,
      );
      return true;
    });
  }

  async series(kind: SeriesKind, id: string, from: number, to: number, resolution: Resolution): Promise<HistoryPoint[]> {
    const res = await this.a.q<Row>(
      `SELECT ${AT} AS at, sum(bytes_up)::int8 AS up, sum(bytes_down)::int8 AS down FROM traffic_history
       WHERE kind = $1 AND series_id = $2 AND resolution = $3 AND bucket >= ${ms('$4')} AND bucket < ${ms('$5')} GROUP BY bucket ORDER BY bucket`,
      [kind, id, resolution, from, to],
    );
    return res.rows.map(point);
  }

  async totals(kind: SeriesKind, from: number, to: number, resolution: Resolution): Promise<HistoryPoint[]> {
    const res = await this.a.q<Row>(
      `SELECT ${AT} AS at, sum(bytes_up)::int8 AS up, sum(bytes_down)::int8 AS down FROM traffic_history
       WHERE resolution = $1 AND bucket >= ${ms('$2')} AND bucket < ${ms('$3')} AND kind = $4 GROUP BY bucket ORDER BY bucket`,
      [resolution, from, to, kind],
    );
    return res.rows.map(point);
  }

  async prune(before: PruneBefore): Promise<number> {
    // Every server of a fleet prunes the shared tables; deleting what another already deleted is harmless.
    return this.a.tx(async (client) => {
      const minutes = await this.a.q(`DELETE FROM traffic_history WHERE resolution = 60 AND bucket < ${ms('$1')}`, [before.minutes], client);
      const hours = await this.a.q(`DELETE FROM traffic_history WHERE resolution = 3600 AND bucket < ${ms('$1')}`, [before.hours], client);
      await this.a.q(`DELETE FROM traffic_history_batches WHERE applied_at < ${ms('$1')}`, [before.batches], client);
      return (minutes.rowCount ?? 0) + (hours.rowCount ?? 0);
    });
  }
}
