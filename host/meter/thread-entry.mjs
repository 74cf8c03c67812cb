// Worker threads cannot take a TypeScript entry point directly. In the build
// (dist/, see host/build.mjs) this file sits beside thread-worker.js and
// loads it; in the sources (tests) it registers tsx and loads thread-worker.ts.
import { existsSync } from 'node:fs';

const built = new URL('./thread-worker.js', import.meta.url);
if (existsSync(built)) {
  await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./thread-worker.ts');
}
