/**
 * QR codes for the terminal, so a phone can scan a client link.
 *
 * The QR matrix comes from `uqr` (small, dependency-free, maintained); the
 * drawing is ours because the usual block-character renderers assume a light
 * terminal background, and a QR code drawn light-on-dark is inverted, which
 * many scanners refuse. We paint both colours explicitly with ANSI
 * backgrounds, two matrix rows per text line:
 *
 *   top module  bottom module   cell
 *   dark        dark            '▀' black on black
 *   dark        light           '▀' black on white
 *   light       dark            '▀' white on black
 *   light       light           '▀' white on white
 *
 * so the code reads correctly on any theme. With `ansi: false` (NO_COLOR)
 * it falls back to plain half-blocks that are right on a dark background.
 */
import { encode } from 'uqr';

/** Options of {@link renderQr}. */
export interface RenderQrInit {
  /** Paint with ANSI colours (works on light and dark terminals). @default true unless NO_COLOR is set */
  ansi?: boolean;
  /** Quiet zone in modules; the standard asks for 4. @default 2 */
  border?: number;
}

const FG = { dark: '\x1b[30m', light: '\x1b[97m' };
const BG = { dark: '\x1b[40m', light: '\x1b[107m' };
const RESET = '\x1b[0m';

/**
 * Renders `text` as a QR code (error correction M: survives a smudged screen
 * without growing a 120-character link past what a terminal fits).
 * Returns lines joined with '\n', ending with '\n'.
 */
export function renderQr(text: string, init: RenderQrInit = {}): string {
  const ansi = init.ansi ?? process.env.NO_COLOR === undefined;
  const qr = encode(text, { ecc: 'M', border: init.border ?? 2 });
  const rows = qr.data;
  const dark = (y: number, x: number): boolean => rows[y]?.[x] ?? false; // past the last row: quiet zone (light)
  const lines: string[] = [];
  for (let y = 0; y < rows.length; y += 2) {
    let line = '';
    for (let x = 0; x < (rows[y]?.length ?? 0); x++) {
      const top = dark(y, x);
      const bottom = dark(y + 1, x);
      if (ansi) line += `${top ? FG.dark : FG.light}${bottom ? BG.dark : BG.light}▀`;
      // Plain mode assumes light text on a dark background: print the light modules.
      else line += !top && !bottom ? '█' : !top ? '▀' : !bottom ? '▄' : ' ';
    }
    lines.push(ansi ? `${line}${RESET}` : line);
  }
  return `${lines.join('\n')}\n`;
}
