// Tests share a 2-core machine with other work: a test waits for conditions with
// bounds of its own, and the default bound on a test or hook is generous, so a busy
// machine slows the suite down without failing it (the first guest a file meters
// loads binaryen, seconds of CPU).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
