// The status page at GET /ui: one self-contained HTML document (ui.html, with
// inline CSS and JS and hand-drawn SVG charts) that polls this host's REST API
// from the browser. The page itself holds no data, so it is served without the
// bearer token; the page asks for the token (or takes it from the URL fragment
// #token=..., which browsers never send to the server) and sends it on every
// API call.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

const PAGE = readFileSync(new URL('./ui.html', import.meta.url), 'utf8');

/** CSP source expressions for the bodies of the page's inline <tag> elements, so nothing else inline may run. */
function inlineHashes(tag: 'script' | 'style'): string[] {
  const bodies = [...PAGE.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => m[1]!);
  if (bodies.length !== 1) throw new Error(`ui.html must have exactly one bare <${tag}> element, found ${bodies.length}`);
  return bodies.map((b) => `'sha256-${createHash('sha256').update(b, 'utf8').digest('base64')}'`);
}

// The page may talk to its own host only, and may not be framed or load anything.
const CSP = [
  "default-src 'none'",
  `script-src ${inlineHashes('script').join(' ')}`,
  `style-src ${inlineHashes('style').join(' ')}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function registerUi(app: FastifyInstance): void {
  app.get('/ui', { schema: { hide: true } }, async (_req, reply) => {
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', CSP)
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .header('x-content-type-options', 'nosniff');
    return PAGE;
  });
}
