// Worker threads cannot take a TypeScript entry point directly; this plain
// module registers the TypeScript loader and then loads the replica worker.
import { register } from 'tsx/esm/api';

register();
await import('./replica-worker.ts');
