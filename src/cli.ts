#!/usr/bin/env node
/** Entry point of the bundle: wires signals and the exit code around main(). */
import './node-version.js';
import { main, reportError } from './main.js';

const controller = new AbortController();
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => controller.abort(new Error(`received ${sig}`)));
}

main(process.argv.slice(2), controller.signal).then(
  // Exit now: logs are written synchronously, and idle gRPC/HTTP keep-alives must not hold the unit.
  (code) => process.exit(code),
  (err: unknown) => process.exit(reportError(err)),
);
