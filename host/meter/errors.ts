/**
 * Errors of the metering layer. Each has a stable `code` that callers (the CLI,
 * the REST API) match on; messages are for people.
 */
import type { FtvmErrorCode } from '../errors.ts';

export class MeterError extends Error {
  constructor(
    readonly code: MeterErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MeterError';
  }
}

/** The codes of the metering layer (host/errors.ts catalogues them). */
export type MeterErrorCode = Extract<
  FtvmErrorCode,
  /** the bytes are not a valid WebAssembly module */
  | 'FTVM_ERR_INVALID_MODULE'
  /** the module uses a feature whose behaviour ftvm cannot make deterministic or meter */
  | 'FTVM_ERR_UNSUPPORTED_FEATURE'
  /** the module's initial memory is larger than the configured memory limit */
  | 'FTVM_ERR_MEMORY_LIMIT'
  /** the module already uses a name that the instrumentation needs */
  | 'FTVM_ERR_NAME_CLASH'
  /**
   * the module nests expressions (other than blocks) deeper than binaryen's
   * reader, optimizer or writer can follow on this thread's stack; the pass's
   * own walks have no such limit
   */
  | 'FTVM_ERR_MODULE_TOO_DEEP'
>;
