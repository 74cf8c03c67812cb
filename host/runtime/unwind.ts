// A command guest's wasm call stack, unwound into bytes and rewound from
// them, through the exports binaryen's Asyncify pass adds (meter option
// asyncify 'input-calls'). This is what lets a guest that never returns from
// `_start` be snapshotted: at the entry of a call that waits for input
// (SNAPSHOT_POINT_IMPORTS), the import asks Asyncify to unwind, every frame
// saves its locals and where it was, `_start` returns to the host, the host
// copies memory, globals and the saved frames, and calls `_start` again in
// rewinding mode, which rebuilds the frames and makes the same import call.
//
// Asyncify keeps the frames in the guest's own linear memory. So that the
// guest's memory is never changed by it, the unwinder borrows a region of it
// (STACK_REGION_OFFSET on), saving the region's bytes before Asyncify writes
// there and putting them back once Asyncify is done with it: after an unwind
// (the frames are copied out first) and when a rewind reached its import.
// Nothing but Asyncify's own code runs while the region is borrowed.

import { EXPORT_DEPTH, EXPORT_UNWIND_FRAME_BYTES } from '../meter/abi.ts';
import { STACK_IMAGE_BYTES_MAX } from '../limits.ts';

export { STACK_IMAGE_BYTES_MAX };

/** Where the borrowed region starts in the guest's memory, in bytes (8-aligned, past the bytes C leaves unused at address 0). */
export const STACK_REGION_OFFSET = 1024;

/** binaryen Asyncify's states (asyncify_get_state). */
const UNWINDING = 1;
const REWINDING = 2;

interface AsyncifyExports {
  asyncify_start_unwind(ptr: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(ptr: number): void;
  asyncify_stop_rewind(): void;
  asyncify_get_state(): number;
}

/** Whether a module exports (by name) what Asyncify adds. */
export function canUnwind(exportNames: ReadonlySet<string>): boolean {
  return ['asyncify_start_unwind', 'asyncify_stop_unwind', 'asyncify_start_rewind', 'asyncify_stop_rewind', 'asyncify_get_state'].every((n) => exportNames.has(n));
}

/**
 * Unwinds and rewinds one instance's wasm stack (see the top of this file).
 * A stack image is the bytes Asyncify wrote: an 8-byte header (two u32, its
 * absolute positions in the region) then each frame's locals and resume
 * point, innermost first; it is valid only for the same module, rewound at
 * the same STACK_REGION_OFFSET, which holds on every host.
 */
export class StackUnwinder {
  private readonly fns: AsyncifyExports;
  /** the region's own bytes while Asyncify has it; null when the guest has it */
  private saved: Uint8Array | null = null;

  constructor(
    instance: WebAssembly.Instance,
    private readonly memory: WebAssembly.Memory,
  ) {
    if (!canUnwind(new Set(Object.keys(instance.exports)))) throw new Error('the instance was not built with Asyncify');
    this.fns = instance.exports as unknown as AsyncifyExports;
    const depth = instance.exports[EXPORT_DEPTH];
    this.depth = depth instanceof WebAssembly.Global ? depth : null;
    const frame = instance.exports[EXPORT_UNWIND_FRAME_BYTES];
    // without the figure (a module built by other means), as much as the region could need
    this.frameBytesMax = frame instanceof WebAssembly.Global ? Number(frame.value) : STACK_IMAGE_BYTES_MAX;
  }

  private readonly depth: WebAssembly.Global | null;
  /** the most bytes Asyncify saves for one frame of this module (EXPORT_UNWIND_FRAME_BYTES) */
  private readonly frameBytesMax: number;

  /** Asyncify is unwinding the stack (an import asked it to, and `_start` has not returned yet, or just did). */
  get unwinding(): boolean {
    return this.fns.asyncify_get_state() === UNWINDING;
  }

  /** Asyncify is rebuilding the stack from an image, and the import it unwound from has not been called again yet. */
  get rewinding(): boolean {
    return this.fns.asyncify_get_state() === REWINDING;
  }

  /** The region's size for the memory as it is now, in bytes (0: too small a memory to borrow from). */
  private regionBytes(): number {
    return Math.max(0, Math.min(STACK_IMAGE_BYTES_MAX, this.memory.buffer.byteLength - STACK_REGION_OFFSET));
  }

  /**
   * Whether an unwind from here surely fits the region: the frames on the
   * stack save at most the metering's depth count in 8-byte slots (a frame
   * weighs its params and locals, at most 8 bytes a slot, and more), plus one
   * frame of the module's largest (EXPORT_UNWIND_FRAME_BYTES) for the
   * innermost, which the depth count leaves out when it calls no guest
   * function, plus the 8-byte header. Asyncify traps on an image that does
   * not fit, so a caller asks first; a snapshot then waits for a shallower
   * call or a larger memory.
   */
  fits(): boolean {
    const slots = this.depth ? Number(this.depth.value) : 0;
    return slots * 8 + this.frameBytesMax + 8 <= this.regionBytes();
  }

  /** Called by an import (instead of doing its work): when it returns, Asyncify unwinds every frame to the host. */
  startUnwind(): void {
    if (this.saved) throw new Error('the stack region is borrowed already');
    const size = this.regionBytes();
    const u8 = new Uint8Array(this.memory.buffer);
    this.saved = u8.slice(STACK_REGION_OFFSET, STACK_REGION_OFFSET + size);
    const dv = new DataView(this.memory.buffer);
    dv.setUint32(STACK_REGION_OFFSET, STACK_REGION_OFFSET + 8, true);
    dv.setUint32(STACK_REGION_OFFSET + 4, STACK_REGION_OFFSET + size, true);
    this.fns.asyncify_start_unwind(STACK_REGION_OFFSET);
  }

  /** After `_start` returned unwinding: ends the unwind, gives the guest its region back, and returns the stack image. */
  stopUnwind(): Uint8Array {
    this.fns.asyncify_stop_unwind();
    const end = new DataView(this.memory.buffer).getUint32(STACK_REGION_OFFSET, true);
    const image = new Uint8Array(this.memory.buffer).slice(STACK_REGION_OFFSET, end);
    this.giveBack();
    return image;
  }

  /** Before calling `_start` again: Asyncify will rebuild the frames of `image` and call the import it unwound from. */
  startRewind(image: Uint8Array): void {
    if (this.saved) throw new Error('the stack region is borrowed already');
    if (image.length < 8 || image.length > this.regionBytes()) {
      throw new Error(`a stack image of ${image.length} bytes does not fit a region of ${this.regionBytes()}`);
    }
    const u8 = new Uint8Array(this.memory.buffer);
    this.saved = u8.slice(STACK_REGION_OFFSET, STACK_REGION_OFFSET + image.length);
    u8.set(image, STACK_REGION_OFFSET);
    this.fns.asyncify_start_rewind(STACK_REGION_OFFSET);
  }

  /** Called by the import the rewind reached, before it does its work: the stack is whole again, and the guest has its region back. */
  stopRewind(): void {
    this.fns.asyncify_stop_rewind();
    this.giveBack();
  }

  private giveBack(): void {
    if (!this.saved) return;
    new Uint8Array(this.memory.buffer).set(this.saved, STACK_REGION_OFFSET);
    this.saved = null;
  }
}
