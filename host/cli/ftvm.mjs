#!/usr/bin/env node
// The `ftvm` command. The host is written in TypeScript and loaded through tsx.
// `ftvm host`, `ftvm cluster` and `ftvm vm` have their own entries: a host daemon never loads the metering pass
// unless it meets a guest it has not metered before (importing it takes seconds).
import { register } from 'tsx/esm/api';

register();
const args = process.argv.slice(2);
if (args[0] === 'host') {
  const { main } = await import('./host-cmd.ts');
  process.exitCode = await main(args.slice(1));
} else if (args[0] === 'cluster') {
  const { clusterMain } = await import('./cluster-cmd.ts');
  process.exitCode = await clusterMain(args.slice(1));
} else if (args[0] === 'vm') {
  const { vmMain } = await import('./vm-cmd.ts');
  process.exitCode = await vmMain(args.slice(1));
} else {
  const { main } = await import('./main.ts');
  process.exitCode = await main(args);
}
