/** The two ways a guest's run leaves the WASI host by exception. */

/** Thrown when the guest blocks and nothing will ever wake it: the run ends idle. */
export class GuestIdle extends Error {
  constructor() {
    super('the guest waits for input and none will come');
    this.name = 'GuestIdle';
  }
}

/** Thrown by proc_exit (and by proc_raise of a terminating signal); unwinds the guest out of its entry point. `code` is the full u32 status. */
export class WasiExit extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`WASI proc_exit(${code})`);
    this.name = 'WasiExit';
    this.code = code;
  }
}
