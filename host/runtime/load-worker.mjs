// Worker threads cannot take a TypeScript entry point directly, so each
// worker has a plain entry (*-entry.mjs) that calls loadWorker. In the build
// (dist/, see host/build.mjs) the entry sits beside its worker's JavaScript
// and loads it; in the sources (tests) it registers tsx and loads the
// TypeScript.
import { existsSync } from 'node:fs';

/**
 * Loads the worker module `name` beside the entry at `entryUrl`: `name`.js
 * when it was built there, else `name`.ts through tsx.
 * @param {string} entryUrl the entry's import.meta.url
 * @param {string} name the worker module's file name, without extension
 * @returns {Promise<unknown>} the loaded module's namespace
 */
export async function loadWorker(entryUrl, name) {
  const built = new URL(`./${name}.js`, entryUrl);
  if (existsSync(built)) return import(built.href);
  const { register } = await import('tsx/esm/api');
  register();
  return import(new URL(`./${name}.ts`, entryUrl).href);
}
