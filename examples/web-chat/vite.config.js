// `npm run demo`: Vite serves the repository root (the page refers to ../../dist/browser and
// ../../models/default by relative URL, exactly as under any static server) and opens the demo's folder.
// The two headers make the page cross-origin isolated: SharedArrayBuffer, so the model runs on every core
// instead of one thread.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * Serves the prebuilt browser bundle (dist/browser/*.js) byte for byte. Vite's dev transforms rewrite its
 * `new URL('./…', import.meta.url)` look-ups of the worker and kernel files into imports of their own, and the
 * model's worker then fails to start.
 */
function servePrebuiltBundle() {
  return {
    name: 'rwkv-prebuilt-bundle',
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const pathname = (req.url ?? '').split('?')[0];
        if (!/^\/dist\/browser\/[\w.-]+\.js$/.test(pathname)) return next();
        fs.readFile(path.join(repoRoot, pathname), (error, body) => {
          if (error) return next();
          res.setHeader('Content-Type', 'text/javascript; charset=utf-8');
          res.setHeader('Cache-Control', 'no-cache'); // `npm run build` may replace it while the server runs
          for (const [name, value] of Object.entries(isolation)) res.setHeader(name, value);
          res.end(body);
        });
      });
    },
  };
}

export default defineConfig({
  root: repoRoot,
  plugins: [servePrebuiltBundle()],
  // The page has no bare imports: nothing to pre-bundle, and no need to scan the whole repository for pages.
  optimizeDeps: { noDiscovery: true, entries: [] },
  server: {
    headers: isolation,
    open: '/examples/web-chat/',
    // Only the demo's own files reload the page when they change (not a rebuild of dist/, not the sources).
    watch: { ignored: ['**/dist/**', '**/models/**', '**/src/**', '**/test/**', '**/bench/**', '**/asm/**'] },
  },
  // No `vite build` / `vite preview`: the page needs no build, and any static server can serve it as it is.
});
