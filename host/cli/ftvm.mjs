#!/usr/bin/env node
// The `ftvm` command. The host is written in TypeScript and loaded through tsx.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
