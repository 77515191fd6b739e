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
