// The entry of the host's metering worker thread (see ../runtime/load-worker.mjs).
import { loadWorker } from '../runtime/load-worker.mjs';

await loadWorker(import.meta.url, 'meter-worker');
