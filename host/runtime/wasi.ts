export * from './wasi/index.ts';
