/**
 * Where commands write. Injected so tests can capture output and so `link`
 * can ask whether stdout is a terminal (QR codes only there).
 */

/** A writable text sink. */
export interface TextOut {
  write(text: string): unknown;
  /** True when this is a terminal. */
  readonly isTTY?: boolean;
}

/** The program's output streams. */
export interface CliIo {
  /** Command results (links, keys, status). */
  readonly stdout: TextOut;
  /** Messages and errors. */
  readonly stderr: TextOut;
}

/** The process's own streams. */
export const processIo: CliIo = { stdout: process.stdout, stderr: process.stderr };

/** The stream events {@link quietOnClosedReader} needs. */
interface ErrorSource {
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
  write(...args: never[]): unknown;
}

/**
 * A reader that goes away (`polytun client --help | head`, a closed
 * terminal) makes our next write fail with EPIPE. That is not our error and
 * deserves no stack trace: further output to that stream is dropped and the
 * command finishes normally. Any other stream error is thrown as before.
 */
export function quietOnClosedReader(stream: ErrorSource): void {
  stream.on('error', (err) => {
    if (err.code !== 'EPIPE') throw err;
    // Later writes would only fail again.
    (stream as { write: unknown }).write = (..._args: unknown[]): boolean => true;
  });
}
