// The worker thread of one replica: runs it and reports how it ended.

import { parentPort, workerData } from 'node:worker_threads';
import { nameReplicaThread, runReplica, type FromReplica, type ReplicaInit } from '../runtime/replay/engine.ts';

const post = (m: FromReplica, transfer?: ArrayBuffer[]): void => parentPort!.postMessage(m, transfer ?? []);
nameReplicaThread();
try {
  runReplica(workerData as ReplicaInit, post);
} catch (e) {
  const err = e as Error & { code?: string };
  post({ t: 'error', code: err.code ?? 'FTVM_ERR_REPLICA', message: err.message });
}
