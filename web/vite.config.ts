/// <reference types="node" />
/**
 * Builds the server's web dashboard (web/) into dist/web/admin/, which the
 * admin listener serves at `/` (src/admin/web-pages.ts). Run by
 * `npm run build` after tsc. Everything is bundled: no CDN, works offline.
 * No inline script or style is emitted, so the page runs under the strict
 * CSP the server sends (script-src 'self'; style-src 'self').
 */
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  publicDir: false,
  logLevel: 'warn',
  // Preact's automatic JSX runtime through vite's own transformer: no plugin needed.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: '../dist/web/admin',
    emptyOutDir: true,
    target: 'es2020',
    // Files, never data: URLs, so that every asset is a plain 'self' request.
    assetsInlineLimit: 0,
    // The polyfill is for browsers without modulepreload; one entry chunk needs none.
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});
