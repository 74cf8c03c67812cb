// Moved to replay/recorder.ts (the record/replay engine's folder); this path stays for existing imports.
export * from './replay/recorder.ts';
