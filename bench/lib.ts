/** Small measuring helpers for `npm run bench`: interleaved runs, medians, ratios against a baseline. */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** The environment a systemd unit gives node-bootstrap: no NODE_OPTIONS, no NODE_EXTRA_CA_CERTS. */
export const CLEAN_ENV: NodeJS.ProcessEnv = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' };

export interface Sample {
  ms: number;
  rssKb?: number;
}

export const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))] ?? Number.NaN;
};
export const median = (xs: number[]): number => quantile(xs, 0.5);

/** Runs a command once under GNU time for wall-clock and peak RSS; throws on a non-zero exit. */
export function runOnce(argv: string[], env: NodeJS.ProcessEnv = CLEAN_ENV): Sample {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', ...argv], { env, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  const rss = Number(r.stderr.trim().split('\n').at(-1));
  return { ms, rssKb: Number.isFinite(rss) ? rss : undefined };
}

/** Interleaves the commands round by round so drift on the machine hits all of them alike. */
export function interleave(
  cmds: Record<string, string[]>,
  rounds: number,
  warmup = 3,
): Record<string, Sample[]> {
  const out: Record<string, Sample[]> = Object.fromEntries(Object.keys(cmds).map((k) => [k, []]));
  for (let i = 0; i < warmup + rounds; i++)
    for (const [k, argv] of Object.entries(cmds)) {
      const s = runOnce(argv);
      if (i >= warmup) out[k]!.push(s);
    }
  return out;
}

export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const w = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(header), line(w.map((n) => '-'.repeat(n))), ...cells.slice(1).map(line)].join('\n');
}

/**
 * runOnce without blocking this process (for benches whose peers, e.g. a stand-in socket or the
 * testbed's emulators, answer from this process): wall-clock from spawn to exit, and peak RSS.
 */
export function runOnceAsync(
  argv: string[],
  env: NodeJS.ProcessEnv = CLEAN_ENV,
  okCodes: number[] = [0],
): Promise<Sample & { code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', '%M', ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    let ms = Number.NaN;
    child.once('error', reject);
    child.once('exit', () => {
      ms = Number(process.hrtime.bigint() - t0) / 1e6;
    });
    child.once('close', (code) => {
      // GNU time exits with the command's code (and says so on stderr before its own line).
      if (code === null || !okCodes.includes(code))
        return reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
      const rss = Number(stderr.trim().split('\n').at(-1));
      resolve({ ms, rssKb: Number.isFinite(rss) ? rss : undefined, code, stdout, stderr });
    });
  });
}

/**
 * `node-bootstrap install --root` into <dir>/image, as an image build does: returns the startup
 * cache's folder there (the heavy parts and their V8 code caches), for NODE_BOOTSTRAP_CACHE_DIR.
 */
export async function installedCache(bundle: string, dir: string): Promise<string> {
  const root = join(dir, 'image');
  mkdirSync(root, { recursive: true });
  await runOnceAsync(['node', bundle, 'install', '--root', root], CLEAN_ENV);
  return join(root, 'var', 'cache', 'node-bootstrap');
}
