/** Cold start of the commands that need no AWS, gRPC or D-Bus, against `node -e 0`, in one run. */
import { interleave, median, quantile, table } from './lib.js';

export function startupBench(rounds = 30): string {
  const bundle = 'dist/node-bootstrap.mjs';
  const cmds = {
    'node -e 0 (baseline)': ['node', '-e', '0'],
    '--version': ['node', bundle, '--version'],
    'resolve-image --region eu-west-1 --json': [
      'node',
      bundle,
      'resolve-image',
      '--region',
      'eu-west-1',
      '--json',
    ],
    'check --help': ['node', bundle, 'check', '--help'],
  };
  const res = interleave(cmds, rounds);
  const base = median(res['node -e 0 (baseline)']!.map((s) => s.ms));
  const rows = Object.entries(res).map(([name, samples]) => {
    const ms = samples.map((s) => s.ms);
    const rss = samples.map((s) => s.rssKb ?? Number.NaN);
    return [
      name,
      median(ms).toFixed(1),
      quantile(ms, 0.9).toFixed(1),
      (median(ms) / base).toFixed(2) + 'x',
      (median(rss) / 1024).toFixed(1),
    ];
  });
  return [
    `Cold start, clean environment (no NODE_OPTIONS / NODE_EXTRA_CA_CERTS), ${rounds} interleaved rounds after 3 warm-ups`,
    'goals: --version within 2x of node -e 0, resolve-image within 2.5x',
    table(['command', 'p50 ms', 'p90 ms', 'vs node -e 0', 'peak RSS MB'], rows),
  ].join('\n');
}
