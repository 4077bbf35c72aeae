/**
 * The commands that talk to containerd, AWS or D-Bus. In the shipped bundle this part is kept as
 * source text and compiled only when one of them runs (see lazy.ts), so that `--version`, `--help`,
 * `resolve-image` and `report` start as fast as Node itself. Each command's modules are initialised
 * only when that command runs (esbuild keeps a dynamically imported module's top level lazy).
 */
type Values = Record<string, string | boolean | undefined>;

export const run = async (v: Values, signal: AbortSignal) =>
  (await import('./commands/run.js')).run(v, signal);
export const guard = async (v: Values, signal: AbortSignal) =>
  (await import('./commands/run.js')).guard(v, signal);
export const check = async (v: Values, signal: AbortSignal) =>
  (await import('./commands/check.js')).check(v, signal);
export const prefetch = async (v: Values, signal: AbortSignal) =>
  (await import('./commands/prefetch.js')).prefetch(v, signal);
export const train = async () => (await import('./commands/train.js')).train();
