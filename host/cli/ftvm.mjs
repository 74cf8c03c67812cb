#!/usr/bin/env node
// The `ftvm` command. The host is written in TypeScript and loaded through tsx.
// `ftvm host` has its own entry: a host daemon never loads the metering pass
// unless it meets a guest it has not metered before (importing it takes seconds).
import { register } from 'tsx/esm/api';

register();
const args = process.argv.slice(2);
const { main } = args[0] === 'host' ? await import('./host-cmd.ts') : await import('./main.ts');
process.exitCode = await main(args[0] === 'host' ? args.slice(1) : args);
