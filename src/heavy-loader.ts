/**
 * The bundle's loader of its heavy parts (scripts/build.mjs embeds it where lazy.ts expects the heavy
 * part, so lazy.ts still decides when). `heavy` (the commands, gRPC) is loaded first; the others only
 * when its code first imports them: `aws` (the AWS SDK and the proxy agent, for an ECR token), `dbus`
 * (dbus-next, for the unit phases) and `mime` (MIME user data), so a boot that finds its image
 * present never reads the SDK. Each part comes from the startup cache when `install` made one for
 * this build (payload.ts), else from the bundle itself.
 */
import { fileURLToPath } from 'node:url';
import { partLoader, STARTUP_CACHE_DIR } from './payload.js';

/** What loaded the parts, for `run`'s status.json (read through startupLoads()). */
const LOADS = Symbol.for('node-bootstrap.startup-loads');

export function loadHeavy(require: NodeJS.Require, entryUrl: string): unknown {
  // Read before any config (this decides how the code that reads the config is loaded): the unit
  // never sets it; tests and benchmarks point it at the root they installed into.
  const cacheDir = process.env.NODE_BOOTSTRAP_CACHE_DIR || STARTUP_CACHE_DIR;
  const loader = partLoader(fileURLToPath(entryUrl), require, entryUrl, cacheDir);
  (globalThis as Record<symbol, unknown>)[LOADS] = loader.loads;
  return loader.part('heavy');
}
