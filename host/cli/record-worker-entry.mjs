// Worker threads cannot take a TypeScript entry point directly. In the build
// (dist/) this file sits beside record-worker.js and loads it; in the sources
// it registers tsx and loads record-worker.ts.
import { existsSync } from 'node:fs';

const built = new URL('./record-worker.js', import.meta.url);
if (existsSync(built)) {
  await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./record-worker.ts');
}
