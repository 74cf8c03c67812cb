// The entry of the guest worker thread (see ./load-worker.mjs).
import { loadWorker } from './load-worker.mjs';

await loadWorker(import.meta.url, 'worker');
