/**
 * The I/O signals prefetch admission reads, thin: Linux pressure stall information for block I/O
 * (/proc/pressure/io, kernel 4.20+ with PSI on) and the block-layer write counter of the volume
 * holding containerd's root (/sys/dev/block/<major>:<minor>/stat). Each read gives undefined when
 * its file is absent or unreadable (that check is then skipped, not failed). The sampler keeps a
 * few seconds of timestamped samples; the arithmetic over them is core/admission.ts's.
 */
import { readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import {
  deviceWriteMBps,
  type IoSample,
  MIN_WINDOW_MS,
  type Psi,
  type PsiReading,
  type PsiSource,
  windowPressure,
} from '../core/admission.js';

export const PSI_IO = '/proc/pressure/io';

/** `some avg10=1.23 avg60=… total=…` / `full …` → avg10 and total of each (pure). */
export function parsePsiReading(text: string): PsiReading | undefined {
  const line = (kind: string) => new RegExp(`^${kind} (.*)$`, 'm').exec(text)?.[1];
  const field = (l: string | undefined, key: string): number | undefined => {
    const m = l === undefined ? null : new RegExp(`\\b${key}=(\\d+(?:\\.\\d+)?)`).exec(l);
    return m ? Number(m[1]) : undefined;
  };
  const some = line('some');
  const full = line('full');
  const avg10 = field(some, 'avg10');
  if (avg10 === undefined) return undefined;
  const reading: PsiReading = { avg10: { some: avg10, full: field(full, 'avg10') ?? 0 } };
  const totalSome = field(some, 'total');
  if (totalSome !== undefined) reading.totalUs = { some: totalSome, full: field(full, 'total') ?? 0 };
  return reading;
}

/** avg10 of each line (pure). */
export const parsePsi = (text: string): Psi | undefined => parsePsiReading(text)?.avg10;

export async function readPsi(file = PSI_IO): Promise<Psi | undefined> {
  try {
    return parsePsi(await readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Field 7 of a block device's `stat` file: sectors (512 B) written since boot (pure). */
export function parseWrittenSectors(text: string): number | undefined {
  const f = text.trim().split(/\s+/);
  const n = Number(f[6]);
  return f.length >= 11 && Number.isFinite(n) ? n : undefined;
}

/**
 * The block device's `stat` file for the filesystem holding `path`; undefined when there is none
 * (e.g. tmpfs, overlay or btrfs subvolumes report an anonymous device).
 */
export function blockStatFile(path: string): string | undefined {
  try {
    const dev = statSync(path, { bigint: true }).dev;
    // glibc's major()/minor() encoding of dev_t.
    const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
    const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
    if (major === 0) return undefined;
    const file = `/sys/dev/block/${major}:${minor}/stat`;
    readFileSync(file, 'utf8');
    return file;
  } catch {
    return undefined;
  }
}

export interface IoSignals {
  psi?: Psi;
  psiSource?: PsiSource;
  /** Write rate of containerd's volume over the window (MB/s). */
  deviceMBps?: number;
}

export interface IoSampler {
  /** Takes a sample now and returns the signals over the window. */
  read(): IoSignals;
  /** The block device's stat file being watched, if any (for the logs). */
  readonly device?: string;
  /** How long until a read can use a window (the first sample is taken at creation). */
  warmInMs(): number;
  stop(): void;
}

/**
 * Samples both files every `intervalMs` (and on each read), keeping `windowMs` and a bit of
 * history, so that a read always has a baseline about one window old. windowMs 0: PSI avg10 only.
 */
export function createIoSampler(opts: {
  /** A path on containerd's volume (its root dir). */
  volume?: string;
  windowMs: number;
  intervalMs?: number;
  psiFile?: string;
  now?: () => number;
}): IoSampler {
  const psiFile = opts.psiFile ?? PSI_IO;
  const now = opts.now ?? (() => performance.now());
  const device = opts.volume ? blockStatFile(opts.volume) : undefined;
  const keepMs = Math.max(opts.windowMs, 1_000) * 3;
  let samples: IoSample[] = [];
  const take = (): IoSample => {
    const s: IoSample = { atMs: now() };
    try {
      s.psi = parsePsiReading(readFileSync(psiFile, 'utf8'));
    } catch {}
    if (device)
      try {
        s.writtenSectors = parseWrittenSectors(readFileSync(device, 'utf8'));
      } catch {}
    return s;
  };
  const push = (s: IoSample) => {
    samples.push(s);
    samples = samples.filter((x) => s.atMs - x.atMs <= keepMs);
  };
  const first = take();
  push(first);
  const timer = setInterval(() => push(take()), opts.intervalMs ?? 250);
  timer.unref();
  return {
    device,
    warmInMs: () => (opts.windowMs > 0 ? Math.max(0, first.atMs + MIN_WINDOW_MS - now()) : 0),
    read() {
      const cur = take();
      const earlier = samples;
      push(cur);
      const w = windowPressure(earlier, cur, opts.windowMs);
      return {
        psi: w?.psi,
        psiSource: w?.source,
        deviceMBps: opts.windowMs > 0 ? deviceWriteMBps(earlier, cur, opts.windowMs) : undefined,
      };
    },
    stop: () => clearInterval(timer),
  };
}
