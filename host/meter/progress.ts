// Progress of the metering pass over one module, and a renderer for a
// terminal or a log. Free of binaryen, so a caller can build its callback
// before deciding to load the pass.

/** One step of metering a module, as `MeterOptions.onProgress` receives it. */
export interface MeterProgress {
  /**
   * parse: validating and reading the module; instrument: functions
   * instrumented so far (`done` of `total`); optimize: binaryen's optimizer,
   * functions optimized so far (`done` of `total`, 0 while inlining);
   * weigh: frame weights of the optimized code; emit: writing the binary;
   * done: finished.
   */
  step: 'parse' | 'instrument' | 'optimize' | 'weigh' | 'emit' | 'done';
  /** for 'instrument' and 'optimize': functions done so far */
  done?: number;
  /** for 'instrument' and 'optimize': functions to do (0 until known) */
  total?: number;
  /** size of the input module, in bytes */
  bytes: number;
  /** time since metering began, in milliseconds */
  elapsed_ms: number;
}

/** Modules smaller than this (bytes) are metered without showing progress: it takes well under a second. */
export const PROGRESS_MIN_BYTES = 1 << 20;

/** Where a progress renderer writes: a stream of text, with `isTTY` when it is a terminal. */
export interface ProgressSink {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * A callback for `MeterOptions.onProgress` that shows progress on `sink` for
 * modules of at least PROGRESS_MIN_BYTES: on a terminal, one line redrawn in
 * place with a bar for the instrumenting step; otherwise one line per step
 * (and per tenth of the functions), so logs stay short.
 */
export function progressReporter(sink: ProgressSink): (p: MeterProgress) => void {
  let lastTenth = -1;
  let lastStep = '';
  let drawn = false;
  return (p) => {
    if (p.bytes < PROGRESS_MIN_BYTES) return;
    const mb = (p.bytes / 1e6).toFixed(1);
    const s = (p.elapsed_ms / 1000).toFixed(1);
    if (sink.isTTY) {
      let line = `ftvm: metering ${mb} MB: ${p.step}`;
      if ((p.step === 'instrument' || p.step === 'optimize') && p.total) {
        const width = 30;
        const filled = Math.round((width * (p.done ?? 0)) / p.total);
        line += ` [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.total} functions`;
      }
      line += ` ${s}s`;
      sink.write(`\r${line.slice(0, (sink.columns ?? 100) - 1)}\x1b[K`);
      drawn = true;
      if (p.step === 'done' && drawn) sink.write('\n');
      return;
    }
    if ((p.step === 'instrument' || p.step === 'optimize') && p.total) {
      const tenth = Math.floor((10 * (p.done ?? 0)) / p.total);
      if (p.step === lastStep && tenth === lastTenth) return;
      lastStep = p.step;
      lastTenth = tenth;
      sink.write(`ftvm: metering ${mb} MB: ${p.step} ${p.done}/${p.total} functions (${s}s)\n`);
      return;
    }
    if (p.step === lastStep) return;
    lastStep = p.step;
    sink.write(`ftvm: metering ${mb} MB: ${p.step} (${s}s)\n`);
  };
}
