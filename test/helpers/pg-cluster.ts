/**
 * A PostgreSQL for a test file: $POLYTUN_TEST_PG if set; otherwise a
 * throwaway cluster started with scripts/pg-test-cluster.sh (stop() removes
 * it). Without PostgreSQL binaries the answer is a reason to skip; any other
 * failure to start is a test failure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const SCRIPT = resolve(import.meta.dirname, '../../scripts/pg-test-cluster.sh');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile('bash', [SCRIPT, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      done({ code, stdout: stdout.trim(), stderr: stderr.trim() });
    });
  });
}

/** The database URL and how to stop it, or why there is none. */
export async function testDatabase(): Promise<{ url: string; stop(): Promise<void> } | { skip: string }> {
  const env = process.env.POLYTUN_TEST_PG;
  if (env !== undefined && env !== '') return { url: env, stop: async () => undefined };
  // The script makes the folder itself, readable by the cluster's owner (`postgres` when we are root).
  const dir = join(tmpdir(), `polytun-pgtest-${process.pid}-${randomBytes(4).toString('hex')}`);
  const stop = async (): Promise<void> => {
    const stopped = await run(['stop', dir]);
    assert.equal(stopped.code, 0, `pg-test-cluster.sh stop failed: ${stopped.stderr}`);
  };
  const started = await run(['start', dir]);
  if (started.code === 3) return { skip: `PostgreSQL is not installed (${started.stderr}); set POLYTUN_TEST_PG or install postgresql` };
  if (started.code !== 0) {
    await stop();
    assert.fail(`pg-test-cluster.sh start failed: ${started.stderr}`);
  }
  return { url: started.stdout, stop };
}
