/** `npm run bench`: every benchmark in one run, each reported against a baseline measured in the same run. */
import { bootPathBench } from './boot-path.js';
import { detectionBench } from './detection.js';
import { outputsBench } from './outputs.js';
import { prefetchBench } from './prefetch.js';
import { startupBench } from './startup.js';

const sections: [string, () => string | Promise<string>][] = [
  ['startup', () => startupBench()],
  ['prefetch', () => prefetchBench()],
  ['detection', () => detectionBench()],
  ['boot-path', () => bootPathBench()],
  ['outputs', () => outputsBench()],
];

const only = process.argv.slice(2);
for (const [name, fn] of sections) {
  if (only.length > 0 && !only.includes(name)) continue;
  process.stdout.write(`\n== ${name} ==\n${await fn()}\n`);
}
