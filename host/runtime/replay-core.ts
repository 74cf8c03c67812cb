// Moved to replay/core.ts (the record/replay engine's folder); this path stays for existing imports.
export * from './replay/core.ts';
