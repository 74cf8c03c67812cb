// The entry of the record worker thread (see ../runtime/load-worker.mjs).
import { loadWorker } from '../runtime/load-worker.mjs';

await loadWorker(import.meta.url, 'record-worker');
