// Worker threads cannot take a TypeScript entry point directly; this plain
// module registers the TypeScript loader and then loads the metering worker.
import { register } from 'tsx/esm/api';

register();
await import('./meter-worker.ts');
