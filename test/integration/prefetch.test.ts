/**
 * `node-bootstrap prefetch` (the shipped bundle) against real containerd 1.7, the real TLS registry
 * serving distinct images under their ECR names, and the ECR/IMDS emulators. Concurrency is observed
 * from containerd's side (its content ingests in flight), not from the product's own timeline.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CriClient, createCriClient } from '../../src/adapters/cri.js';
import { blockStatFile } from '../../src/adapters/psi.js';
import type { PrefetchTimeline } from '../../src/commands/prefetch.js';
import { ECR_HOST, startTestbed, type Testbed } from '../testbed/index.js';
import { pushDataImage } from '../testbed/pause-image.js';
import { BIN, ensureBuilt, freshStateDir, scenarioConfig, testbedSecrets, until } from './lib/run-bundle.js';

const step = it.sequential;
const IMAGES = ['a', 'b', 'c', 'd'].map((n) => `${ECR_HOST}/data/${n}:1`);
const MISSING = `${ECR_HOST}/data/missing:1`;
/** Admission left to the concurrency cap (the machine's own I/O pressure must not decide here). */
const QUIET = { pressure: { some: 100, full: 100 }, jitter: 0, registryQps: 50, budgetMBps: 100_000 };

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  timeline?: PrefetchTimeline;
}

function start(tb: Testbed, config: string, stateDir: string) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, 'prefetch', '--config', config, '--state-dir', stateDir], {
    env: tb.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const done = new Promise<Result>((resolve) =>
    child.once('close', (code) =>
      resolve({ code, stdout, stderr, ms: performance.now() - t0, timeline: timelineOf(stateDir) }),
    ),
  );
  return { child, done };
}

function timelineOf(stateDir: string): PrefetchTimeline | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, 'prefetch.json'), 'utf8')) as PrefetchTimeline;
  } catch {
    return undefined;
  }
}

/** Blob downloads of more than 1 MB containerd has in flight right now (one layer per image here). */
function ingestsInFlight(tb: Testbed): number {
  const dir = join(tb.containerd!.dir, 'root', 'io.containerd.content.v1.content', 'ingest');
  let n = 0;
  for (const d of existsSync(dir) ? readdirSync(dir) : []) {
    try {
      if (Number(readFileSync(join(dir, d, 'total'), 'utf8')) > 1 << 20) n++;
    } catch {}
  }
  return n;
}

const states = (t: PrefetchTimeline | undefined) =>
  Object.fromEntries((t?.images ?? []).map((i) => [i.image.replace(`${ECR_HOST}/`, ''), i.state]));

describe('prefetch (containerd 1.7, real registry, ECR auth)', () => {
  let tb: Testbed;
  let cri: CriClient;
  const present = async (ref: string) => (await cri.imageStatus(ref, AbortSignal.timeout(5_000))) !== null;

  beforeAll(async () => {
    await ensureBuilt();
    tb = await startTestbed({ containerd: { version: '1.7' } });
    for (let i = 0; i < IMAGES.length; i++)
      await pushDataImage(tb.registry!, `data/${'abcd'[i]}`, '1', { layers: 1, layerMB: 24 + 8 * i });
    cri = createCriClient(tb.containerd!.socket);
  }, 180_000);
  afterAll(async () => {
    cri?.close();
    await tb?.stop();
  });

  step(
    'pulls what is missing, skips what is present, caps concurrency, and a failing image does not stop the others',
    async () => {
      // One image is already there (an AMI build, kubelet): it must be skipped, not pulled again.
      const auth = { username: tb.registry!.username, password: tb.registry!.password };
      await cri.pullImage(IMAGES[0]!, auth, AbortSignal.timeout(30_000));
      const config = scenarioConfig(tb, {
        prefetch: {
          ...QUIET,
          maxConcurrent: 2,
          // The missing image first (highest priority): its failure must not stop the rest.
          images: [{ image: MISSING, priority: 10 }, ...IMAGES],
        },
      });
      const ecrBefore = tb.ecr!.requests.length;
      const run = start(tb, config, freshStateDir(tb));
      let most = 0;
      const sampler = (async () => {
        while (run.child.exitCode === null) {
          most = Math.max(most, ingestsInFlight(tb));
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const r = await run.done;
      await sampler;
      const why = `exit ${r.code}\n${r.stdout}\n${r.stderr.slice(-3000)}`;
      expect(r.code, why).toBe(69);
      expect(r.stdout).toMatch(/^node-bootstrap: FAILED prefetch code=PULL_NOT_FOUND .*3 pulled/m);
      expect(states(r.timeline)).toEqual({
        'data/missing:1': 'failed',
        'data/a:1': 'present',
        'data/b:1': 'pulled',
        'data/c:1': 'pulled',
        'data/d:1': 'pulled',
      });
      expect(r.timeline?.result).toBe('failed');
      for (const ref of IMAGES) expect(await present(ref), ref).toBe(true);
      // containerd never had more than two image downloads in flight, and did have two at once.
      expect(most, 'ingests in flight at once').toBeLessThanOrEqual(2);
      expect(most).toBeGreaterThanOrEqual(1);
      expect(r.timeline?.peak.inFlight).toBe(2);
      // The I/O signals: PSI over a short window, and the block device under containerd's root as
      // its CRI plugin reports it (the testbed's containerd keeps its root in its own folder).
      const root = join(tb.containerd!.dir, 'root');
      expect(r.timeline?.signals).toMatchObject({ psi: 'window', windowMs: 1_000, volume: root });
      expect(r.timeline?.signals.device).toBe(blockStatFile(root));
      // The ECR names were pulled with a token from the ECR API (one call for the one account).
      const calls = tb.ecr!.requests.slice(ecrBefore).filter((q) => q.target === 'GetAuthorizationToken');
      expect(calls.length).toBe(1);
      // Per-image facts: size from CRI, duration; no secret anywhere.
      const d = r.timeline!.images.find((i) => i.image === IMAGES[3])!;
      expect(d.bytes).toBeGreaterThan(48 << 20);
      expect(d.durationMs).toBeGreaterThan(0);
      for (const s of testbedSecrets(tb)) {
        expect(r.stdout + r.stderr).not.toContain(s);
        expect(JSON.stringify(r.timeline)).not.toContain(s);
      }
    },
    90_000,
  );

  step(
    'maxConcurrent 1: one download at a time, seen from containerd',
    async () => {
      for (const ref of IMAGES) await cri.removeImage(ref, AbortSignal.timeout(5_000));
      const config = scenarioConfig(tb, { prefetch: { ...QUIET, maxConcurrent: 1, images: IMAGES } });
      const run = start(tb, config, freshStateDir(tb));
      let most = 0;
      let samples = 0;
      while (run.child.exitCode === null) {
        const n = ingestsInFlight(tb);
        most = Math.max(most, n);
        if (n > 0) samples++;
        await new Promise((r) => setTimeout(r, 5));
      }
      const r = await run.done;
      expect(r.code, r.stdout + r.stderr.slice(-2000)).toBe(0);
      expect(samples, 'the sampler saw downloads').toBeGreaterThan(0);
      expect(most).toBe(1);
      // Smallest first (no priorities, sizes unknown → as configured; sizes are measured as they land).
      const starts = r.timeline!.images.map((i) => [i.image, Date.parse(i.startedAt!)] as const);
      expect([...starts].sort((x, y) => x[1] - y[1]).map((s) => s[0])).toEqual(IMAGES);
    },
    90_000,
  );

  step(
    'SIGTERM mid-run stops at once (exit 75, pull cancelled); the next run resumes',
    async () => {
      for (const ref of IMAGES) await cri.removeImage(ref, AbortSignal.timeout(5_000)).catch(() => {});
      const stateDir = freshStateDir(tb);
      const config = scenarioConfig(tb, { prefetch: { ...QUIET, maxConcurrent: 1, images: IMAGES } });
      const run = start(tb, config, stateDir);
      // Stop it once the first image landed and the second is being pulled.
      const mid = await until(() => {
        const s = states(timelineOf(stateDir));
        return s['data/a:1'] === 'pulled' && s['data/b:1'] === 'pulling';
      }, 30_000);
      expect(mid, JSON.stringify(timelineOf(stateDir)?.images.map((i) => i.error))).toBe(true);
      const sent = performance.now();
      run.child.kill('SIGTERM');
      const r = await run.done;
      expect(performance.now() - sent, 'stops within 3 s').toBeLessThan(3_000);
      expect(r.code, r.stdout + r.stderr.slice(-2000)).toBe(75);
      expect(r.stdout).toMatch(/FAILED prefetch code=ABORTED/);
      expect(r.timeline?.result).toBe('aborted');
      const after = states(r.timeline);
      expect(after['data/a:1']).toBe('pulled');
      expect(['cancelled', 'pulled']).toContain(after['data/b:1']);
      expect(after['data/d:1']).toBe('pending');
      expect(await present(IMAGES[3]!)).toBe(false);

      const again = await start(tb, config, stateDir).done;
      expect(again.code, again.stdout + again.stderr.slice(-2000)).toBe(0);
      const s = states(again.timeline);
      expect(s['data/a:1']).toBe('present');
      expect(s['data/d:1']).toBe('pulled');
      for (const ref of IMAGES) expect(await present(ref), ref).toBe(true);
    },
    90_000,
  );
});
