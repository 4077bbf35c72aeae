/**
 * Prefetch vs "everything at once" on a volume with a real throughput limit, in one run:
 *   idle        the foreground probe alone (the baseline for latency)
 *   all-at-once every image pulled through CRI in parallel (kubelet at boot, serializeImagePulls=false)
 *   prefetch    `node-bootstrap prefetch` (the bundle), budget = the volume's limit, at a few policy
 *               settings (a small trade-off sweep: the previous avg10 signal, the default, a gentler one)
 * For each: completion time, /proc/pressure/io over 1 s windows (from its `total=` counters, every
 * 250 ms: peak and mean), and the latency of a probe standing for a starting pod (4 KiB write +
 * fdatasync every 50 ms on the same filesystem): median, p99, the share of probes slower than twice
 * idle's p99, and for prefetch the p99 of the probes taken while a pull was in flight vs between pulls.
 *
 * Contention: this VM's disk is too fast to saturate and has no nbd or device-mapper, so containerd's
 * root goes on an ext4 loop device (direct I/O to a file) whose writes are throttled by the cgroup-v1
 * blkio controller at the root cgroup (blkio.throttle.write_bps_device, every writer incl. the
 * kernel's flusher), with the device's dirty page cache capped (bdi strict_limit + max_bytes), like
 * an EBS volume with a fixed MB/s budget. Everything is removed at the end, also on failure.
 *
 * Also: a fleet simulation of the request rate N nodes put on the ECR API and the registry, with and
 * without the start jitter.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { createCriClient } from '../src/adapters/cri.js';
import { parsePsiReading, parseWrittenSectors } from '../src/adapters/psi.js';
import type { PrefetchTimeline } from '../src/commands/prefetch.js';
import { type IoSample, windowPressure } from '../src/core/admission.js';
import { startContainerd } from '../test/testbed/containerd.js';
import { ECR_HOST, startTestbed } from '../test/testbed/index.js';
import { pushDataImage } from '../test/testbed/pause-image.js';
import { median, quantile, table } from './lib.js';

const RATE_MBPS = 60;
const IMAGES = 4;
const LAYERS = 2;
const LAYER_MB = 64;
const BLKIO = '/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device';
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();

interface Disk {
  dev: string;
  majmin: string;
  mnt: string;
  cleanup(): void;
}

function throttledDisk(root: string): Disk {
  const img = join(root, 'disk.img');
  const mnt = join(root, 'mnt');
  mkdirSync(mnt, { recursive: true });
  const undo: (() => void)[] = [() => rmSync(img, { force: true })];
  const cleanup = () => {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch {}
    }
  };
  try {
    sh('truncate', ['-s', '6G', img]);
    const dev = sh('losetup', ['--direct-io=on', '--find', '--show', img]);
    undo.push(() => sh('losetup', ['-d', dev]));
    const majmin = readFileSync(`/sys/class/block/${dev.replace('/dev/', '')}/dev`, 'utf8').trim();
    sh('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', dev]);
    sh('mount', [dev, mnt]);
    undo.push(() => sh('umount', ['-l', mnt]));
    writeFileSync(BLKIO, `${majmin} ${RATE_MBPS * 1024 * 1024}`);
    undo.push(() => writeFileSync(BLKIO, `${majmin} 0`));
    const bdi = `/sys/class/bdi/${majmin}`;
    writeFileSync(`${bdi}/strict_limit`, '1');
    writeFileSync(`${bdi}/max_bytes`, String(64 * 1024 * 1024));
    return { dev, majmin, mnt, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

/** The probe: a child process (so that it is never delayed by this process' event loop). */
function startProbe(dir: string) {
  const code = `
    const fs = require('node:fs');
    const fd = fs.openSync(${JSON.stringify(join(dir, 'probe.dat'))}, 'w');
    const buf = Buffer.alloc(4096, 7); const out = []; let i = 0; let stop = false;
    process.on('SIGTERM', () => { stop = true; });
    const tick = () => {
      if (stop) { process.stdout.write(JSON.stringify(out)); fs.closeSync(fd); return; }
      const t = process.hrtime.bigint();
      const at = Date.now();
      fs.writeSync(fd, buf, 0, 4096, (i++ % 256) * 4096); fs.fdatasyncSync(fd);
      out.push([at, Number(process.hrtime.bigint() - t) / 1e6]);
      setTimeout(tick, 50);
    };
    tick();`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    text += d;
  });
  return {
    stop: () =>
      new Promise<ProbeSample[]>((resolve) => {
        child.once('close', () =>
          resolve((JSON.parse(text || '[]') as [number, number][]).map(([at, ms]) => ({ at, ms }))),
        );
        child.kill('SIGTERM');
      }),
  };
}

/** When a probe write started (epoch ms) and how long write + fdatasync took. */
interface ProbeSample {
  at: number;
  ms: number;
}

const psiSample = (): IoSample => ({
  atMs: performance.now(),
  psi: parsePsiReading(readFileSync('/proc/pressure/io', 'utf8')),
});

/** PSI over 1 s windows (the kernel's cumulative stall counters), every 250 ms. */
function startPsi() {
  const some: number[] = [];
  const full: number[] = [];
  const samples: IoSample[] = [psiSample()];
  const timer = setInterval(() => {
    const cur = psiSample();
    const w = windowPressure(samples, cur, 1_000);
    samples.push(cur);
    if (samples.length > 8) samples.shift();
    if (w?.source === 'window') {
      some.push(w.psi.some);
      full.push(w.psi.full);
    }
  }, 250);
  return {
    stop: () => {
      clearInterval(timer);
      return { some, full };
    },
  };
}

interface Work {
  note: string;
  /** Epoch-ms intervals in which a pull was in flight (prefetch only). */
  pulls?: [number, number][];
}

interface Measured extends Work {
  name: string;
  ms: number;
  /** MB the volume wrote (its block-layer counter) while the mode ran. */
  writtenMB: number;
  probe: ProbeSample[];
  psi: { some: number[]; full: number[] };
}

async function measure(name: string, disk: Disk, work: () => Promise<Work>): Promise<Measured> {
  const sectors = () => parseWrittenSectors(readFileSync(`/sys/dev/block/${disk.majmin}/stat`, 'utf8')) ?? 0;
  const probe = startProbe(disk.mnt);
  const psi = startPsi();
  const s0 = sectors();
  const t0 = performance.now();
  const w = await work();
  const ms = performance.now() - t0;
  const writtenMB = ((sectors() - s0) * 512) / 2 ** 20;
  return { name, ms, writtenMB, probe: await probe.stop(), psi: psi.stop(), ...w };
}

/** Waits until the volume is quiet again (dirty pages written, PSI back down), at most 40 s. */
async function settle(): Promise<void> {
  sh('sync', []);
  const end = performance.now() + 40_000;
  let prev = psiSample();
  while (performance.now() < end) {
    await sleep(1_000);
    const cur = psiSample();
    const w = windowPressure([prev], cur, 1_000);
    prev = cur;
    if (!w || w.psi.some < 10) return;
  }
}

/** Peak requests/s over 1 s buckets when N nodes boot over `bootS` and each starts after U[0, jitterS). */
export function fleetPeak(n: number, bootS: number, jitterS: number, perNode: number, seed = 1): number {
  let x = seed;
  const rnd = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
  const buckets = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const t = rnd() * bootS + rnd() * jitterS;
    const b = Math.floor(t);
    buckets.set(b, (buckets.get(b) ?? 0) + perNode);
  }
  return Math.max(...buckets.values());
}

function fleetTable(): string {
  // ECR API: one GetAuthorizationToken per node per account at prefetch start. Registry: requests
  // for the prefetch's first image (token, manifest, config, layers ~ 5) at the same moment.
  const rows: (string | number)[][] = [];
  for (const n of [1000, 5000])
    for (const jitter of [0, 30, 120]) {
      const ecr = fleetPeak(n, 10, jitter, 1);
      rows.push([n, `${jitter} s`, ecr, fleetPeak(n, 10, jitter, 5), (n / (10 + jitter)).toFixed(0)]);
    }
  return [
    'Fleet simulation: N nodes finish booting uniformly over 10 s (one scale-out); each starts prefetch after',
    'U[0, jitter): its ECR token request, then its first pull (~5 registry requests). Peak over 1 s buckets.',
    table(['nodes', 'jitter', 'ECR API peak req/s', 'registry peak req/s', 'mean nodes/s'], rows),
  ].join('\n');
}

export async function prefetchBench(): Promise<string> {
  const out: string[] = [fleetTable(), ''];
  if (!existsSync(BLKIO) || !existsSync('/proc/pressure/io'))
    return `${out.join('\n')}\nskipped the disk part: needs cgroup-v1 blkio and /proc/pressure/io`;
  const root = mkdtempSync('/tmp/nbpf-');
  const disk = throttledDisk(root);
  const tb = await startTestbed({ containerd: false, push: [] });
  let ctrd: Awaited<ReturnType<typeof startContainerd>> | undefined;
  try {
    const refs: string[] = [];
    for (let i = 0; i < IMAGES; i++) {
      await pushDataImage(tb.registry!, `bench/img${i}`, '1', {
        layers: LAYERS,
        layerMB: LAYER_MB,
        name: `bench-${i}`,
      });
      refs.push(`${ECR_HOST}/bench/img${i}:1`);
    }
    ctrd = await startContainerd(join(disk.mnt, 'c'), { version: '1.7' });
    await ctrd.trustRegistry(ECR_HOST, `https://${tb.registry!.host}`, tb.registry!.caFile);
    const cri = createCriClient(ctrd.socket);
    const auth = { username: tb.registry!.username, password: tb.registry!.password };
    const clean = async () => {
      for (const r of refs) await cri.removeImage(r, AbortSignal.timeout(10_000)).catch(() => {});
      await settle();
    };
    const results: Measured[] = [];
    await settle();
    results.push(
      await measure('idle (probe alone, 8 s)', disk, async () => {
        await sleep(8_000);
        return { note: '' };
      }),
    );
    results.push(
      await measure('all at once (kubelet at boot)', disk, async () => {
        await Promise.all(refs.map((r) => cri.pullImage(r, auth, AbortSignal.timeout(240_000))));
        return { note: `${refs.length} parallel CRI pulls` };
      }),
    );
    // The sweep: the same images, the same budget (the volume's limit), three admission settings.
    const settings: [string, Record<string, unknown>][] = [
      ['prefetch: avg10 signal (as before)', { pressure: { window: 0 } }],
      ['prefetch: default (1 s window + drain)', {}],
      ['prefetch: serial (maxConcurrent 1)', { maxConcurrent: 1 }],
      ['prefetch: no I/O gating (caps+budget)', { drain: false, pressure: { some: 100, full: 100 } }],
    ];
    for (const [i, [name, extra]] of settings.entries()) {
      await clean();
      const stateDir = join(root, `state-${i}`);
      const config = join(root, `prefetch-${i}.yaml`);
      writeFileSync(
        config,
        stringify({
          containerd: { socket: ctrd.socket },
          prefetch: { images: refs, budgetMBps: RATE_MBPS, jitter: 0, timeout: '4m', ...extra },
        }),
      );
      results.push(
        await measure(name, disk, async () => {
          const r = await new Promise<number | null>((resolve) => {
            const c = spawn(
              process.execPath,
              ['dist/node-bootstrap.mjs', 'prefetch', '--config', config, '--state-dir', stateDir],
              { env: tb.env, stdio: ['ignore', 'ignore', 'ignore'] },
            );
            c.once('close', resolve);
          });
          const t = JSON.parse(readFileSync(join(stateDir, 'prefetch.json'), 'utf8')) as PrefetchTimeline;
          const waited = t.images.reduce((s, i) => s + i.pressureWaitMs, 0);
          const pulls = t.images
            .filter((i) => i.startedAt && i.durationMs !== undefined)
            .map((i): [number, number] => [
              Date.parse(i.startedAt!),
              Date.parse(i.startedAt!) + i.durationMs!,
            ]);
          return {
            note: `exit ${r}, signal ${t.signals.psi}${t.signals.device ? ` + ${t.signals.device}` : ''}, most in flight ${t.peak.inFlight}, ${(waited / 1000).toFixed(1)} s waiting for the disk`,
            pulls,
          };
        }),
      );
    }
    cri.close();
    const idle = results[0]!;
    const burst = results[1]!;
    const lat = (ps: ProbeSample[]) => ps.map((p) => p.ms);
    const idleP99 = quantile(lat(idle.probe), 0.99);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(xs.length, 1);
    const p99 = (ps: ProbeSample[]) => (ps.length ? quantile(lat(ps), 0.99).toFixed(0) : '-');
    const during = (r: Measured, p: ProbeSample) => r.pulls?.some(([a, b]) => p.at + p.ms >= a && p.at <= b);
    const rows = results.map((r, i) => [
      r.name,
      i === 0 ? '-' : (r.ms / 1000).toFixed(1),
      i < 2 ? '-' : `${(r.ms / burst.ms).toFixed(2)}x`,
      `${Math.max(...r.psi.some).toFixed(0)}/${mean(r.psi.some).toFixed(0)}`,
      `${Math.max(...r.psi.full).toFixed(0)}/${mean(r.psi.full).toFixed(0)}`,
      median(lat(r.probe)).toFixed(1),
      quantile(lat(r.probe), 0.99).toFixed(1),
      `${(quantile(lat(r.probe), 0.99) / idleP99).toFixed(1)}x`,
      `${((100 * r.probe.filter((p) => p.ms > 2 * idleP99).length) / Math.max(r.probe.length, 1)).toFixed(0)}%`,
      `${((100 * r.writtenMB) / (RATE_MBPS * (r.ms / 1000))).toFixed(0)}%`,
      r.pulls
        ? `${p99(r.probe.filter((p) => during(r, p)))}/${p99(r.probe.filter((p) => !during(r, p)))}`
        : '-',
      r.probe.length,
    ]);
    const total = (IMAGES * LAYERS * LAYER_MB).toFixed(0);
    const best = results.slice(2).map((r) => ({
      r,
      time: r.ms / burst.ms,
      p99: quantile(lat(r.probe), 0.99) / idleP99,
    }));
    const verdict = (ok: boolean) => (ok ? 'MET' : 'MISSED');
    out.push(
      `Disk: ext4 on a loop device (direct I/O), writes throttled to ${RATE_MBPS} MB/s by cgroup-v1 blkio at the root cgroup, dirty cache of the device capped at 64 MB (bdi strict_limit).`,
      `Images: ${IMAGES} x ${LAYERS} layers x ${LAYER_MB} MB of random bytes (${total} MB, uncompressed layers), real registry (TLS, auth), containerd 1.7 with its root on that disk.`,
      'Probe: 4 KiB write + fdatasync every 50 ms on the same filesystem (closed loop: a slow probe delays the next, so slow periods are under-sampled).',
      'PSI: /proc/pressure/io over 1 s windows from its total= counters, every 250 ms (peak/mean %; system-wide, so other work on this shared machine shows too).',
      `Prefetch budget: ${RATE_MBPS} MB/s (the volume's limit) in every setting. "slow" = share of probes over 2x idle p99; "volume busy" = MB the`,
      `volume wrote (block-layer counter) / (${RATE_MBPS} MB/s x time); "p99 in/out pulls" = probes while a pull was in flight / between pulls.`,
      'goals: probe p99 during prefetch within 2x of idle; prefetch time within 1.3x of all-at-once',
      table(
        [
          'mode',
          'time s',
          'vs all-at-once',
          'psi some pk/mean',
          'psi full pk/mean',
          'probe p50 ms',
          'probe p99 ms',
          'p99 vs idle',
          'slow',
          'volume busy',
          'p99 in/out pulls ms',
          'samples',
        ],
        rows,
      ),
      ...results.filter((r) => r.note).map((r) => `${r.name}: ${r.note}`),
      ...best.map(
        (b) =>
          `${b.r.name}: time ${b.time.toFixed(2)}x (${verdict(b.time <= 1.3)}), p99 ${b.p99.toFixed(1)}x idle (${verdict(b.p99 <= 2)})`,
      ),
      '',
      'Why both goals cannot be met with admission through CRI: an admitted pull downloads and unpacks at whatever',
      "speed the page cache takes (CRI has no pacing), so one pull alone fills the volume's dirty-page allowance",
      `(64 MB here, ~${(64 / RATE_MBPS).toFixed(1)} s of writes at ${RATE_MBPS} MB/s) and a probe's fdatasync waits behind that queue: the "in" p99`,
      'is of the same order for one pull as for four. The pulls write the same MB whatever the order, so within 1.3x of the',
      'all-at-once time the volume is busy (queue non-empty) for ~1/1.3 = 77% of the run or more ("volume busy"), and',
      'far more than 1% of the probes wait behind a full queue: the p99 is the queue. Admission only chooses how the',
      'busy time is spread: quiet gaps between pulls (the "out" p99, the lower "slow" share and median) cost time,',
      "and the goal's 1.3x leaves ~23% of the run for them. Lowering the p99 itself needs a lever below CRI that",
      "paces containerd's writes: its cgroup's write limit (cgroup v2 io.max charges writeback to the cgroup that",
      'dirtied the pages; this machine is cgroup v1, where writeback is charged to the root) or a smaller dirty',
      'allowance for the volume during prefetch.',
    );
    return out.join('\n');
  } finally {
    await ctrd?.cleanup().catch(() => {});
    await tb.stop();
    disk.cleanup();
    rmSync(root, { recursive: true, force: true });
  }
}
