/**
 * The commands that talk to containerd, AWS or D-Bus. In the shipped bundle this part is kept as
 * source text and compiled only when one of them runs (see lazy.ts), so that `--version`, `--help`,
 * `resolve-image` and `report` start as fast as Node itself.
 */
export { check } from './commands/check.js';
export { prefetch } from './commands/prefetch.js';
export { guard, run } from './commands/run.js';
export { train } from './commands/train.js';
