// The worker thread of a metering job (see meter-pool.ts): it checks a guest
// and meters it with compileGuestAsync, which loads binaryen only when the
// metered module is not cached. The host's own thread never loads binaryen
// and never runs the pass, so its heartbeats and API keep their pace while a
// large module is metered; replica workers never load binaryen either.

import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { compileGuestAsync } from '../runtime/compile.ts';
import { GuestLoadError } from '../runtime/instance.ts';
import type { MeterReply, MeterRequest } from './meter-pool.ts';
import { isErrorCode } from '../errors.ts';

const port = parentPort!;
port.on('message', (m: MeterRequest) => {
  void (async () => {
    let reply: MeterReply;
    try {
      const c = await compileGuestAsync(m.bytes, m.opts, true);
      // a copy: the metered bytes may be the memory cache's own
      const metered = c.metered.slice();
      reply = { t: 'done', id: m.id, metered, meteredHash: createHash('sha256').update(metered).digest('hex'), module: c.module };
    } catch (e) {
      const err = e as Error & { code?: string };
      reply = { t: 'error', id: m.id, load: e instanceof GuestLoadError, code: isErrorCode(err.code) ? err.code : 'FTVM_ERR_INTERNAL', message: err.message };
    }
    port.postMessage(reply, reply.t === 'done' ? [reply.metered.buffer as ArrayBuffer] : []);
    // binaryen stopped part-way (its stack ran out) leaves its heap as it was
    // then: this thread meters nothing more (the pool starts another).
    if (reply.t === 'error' && reply.code === 'FTVM_ERR_MODULE_TOO_DEEP') port.close();
  })();
});
