/// <reference types="node" />
/**
 * Builds the two web pages, each a single-page app:
 *
 *   vite build --config web/vite.config.ts                 web/index.html        → dist/web/admin/   the server's dashboard (src/admin/web-pages.ts)
 *   vite build --config web/vite.config.ts --mode client   web/client/index.html → dist/web/client/  the client's dashboard and wizard (src/ui/server.ts)
 *
 * Both run by `npm run build` after tsc; they share web/src's chart,
 * formatting and styles. Everything is bundled: no CDN, works offline. No
 * inline script or style is emitted, so the pages run under the strict CSP
 * the servers send (script-src 'self'; style-src 'self').
 */
import { defineConfig } from 'vite';

export default defineConfig(({ mode }) => {
  const client = mode === 'client';
  return {
    root: client ? `${import.meta.dirname}/client` : import.meta.dirname,
    base: '/',
    publicDir: false,
    logLevel: 'warn',
    // Preact's automatic JSX runtime through vite's own transformer: no plugin needed.
    oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
    build: {
      outDir: `${import.meta.dirname}/../dist/web/${client ? 'client' : 'admin'}`,
      emptyOutDir: true,
      target: 'es2020',
      // Files, never data: URLs, so that every asset is a plain 'self' request.
      assetsInlineLimit: 0,
      // The polyfill is for browsers without modulepreload.
      modulePreload: { polyfill: false },
      reportCompressedSize: false,
    },
  };
});
