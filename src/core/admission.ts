/**
 * I/O-aware admission for image prefetch (pure). containerd does the unpacking, so the only lever
 * is when, and how many, pulls start. Given what is in flight, the node's I/O pressure, the write
 * rate of containerd's volume and the recent registry requests, decide: admit the next image now,
 * or wait (and for how long).
 *
 * Order of the checks: concurrency cap, registry QPS cap, drain (the volume still flushing what
 * earlier pulls wrote), I/O pressure (with backoff and jitter), write-rate budget. Never starve: with
 * nothing in flight, an image that has waited `maxWaitMs` is admitted whatever the signals say.
 *
 * The signals must be fresh: a pull that ends leaves its dirty pages queued in front of the volume
 * for a second or more, and PSI's avg10 still reads high ~10 s after the disk went quiet. So the
 * pressure used here is computed over a short window from PSI's cumulative stall counters
 * (`windowPressure`), with avg10 only as the fallback, and the volume's measured write rate
 * (`deviceWriteMBps`, from its block-layer counters) says when the backlog has drained.
 */

export interface AdmissionPolicy {
  /** Write budget of the node's volume in MB/s (gp3 baseline: 125). */
  budgetMBps: number;
  maxConcurrent: number;
  /** Registry request starts per second (a pull counts as one). */
  registryQps: number;
  /** PSI thresholds (% of the window stalled): at or above either, no new pull starts; 100: off. */
  pressure: { some: number; full: number };
  /** Minimum progress: with nothing in flight, a pull starts after waiting this long at most. */
  maxWaitMs: number;
  /**
   * With nothing in flight, wait until the volume's measured write rate falls under
   * DRAIN_SHARE x budget (what the last pull wrote has left the page cache) before the next pull.
   */
  drain: boolean;
  /** Backoff while idle and pressure is high: base * 2^n, capped, with ±50% jitter. */
  backoffMs: { base: number; max: number };
}

export const DEFAULT_POLICY: AdmissionPolicy = {
  budgetMBps: 125,
  maxConcurrent: 2,
  registryQps: 5,
  pressure: { some: 20, full: 5 },
  maxWaitMs: 30_000,
  drain: true,
  backoffMs: { base: 250, max: 2_000 },
};

/**
 * With nothing in flight, the next pull waits while the volume still writes at this share of the
 * budget or more: the previous pull's dirty pages are still draining, and a new pull would queue
 * its writes behind them.
 */
export const DRAIN_SHARE = 0.5;

export interface InFlight {
  sizeMB: number;
  startedMs: number;
}

export interface Psi {
  /** % of the time some task was stalled on I/O ("some" line) */
  some: number;
  /** % of the time all non-idle tasks were stalled on I/O ("full" line) */
  full: number;
}

/** One reading of /proc/pressure/io: its avg10 figures and its cumulative stall counters (µs). */
export interface PsiReading {
  avg10: Psi;
  /** Cumulative stall time, µs (`total=`); undefined on kernels that do not print it. */
  totalUs?: { some: number; full: number };
}

/** A timestamped sample of the I/O signals (what the sampler keeps). */
export interface IoSample {
  atMs: number;
  psi?: PsiReading;
  /** Cumulative sectors (512 B) written to containerd's volume (/sys/dev/block/M:m/stat). */
  writtenSectors?: number;
}

/** Where the pressure figure came from: a short window over `total=`, or avg10 (fallback). */
/** The shortest window worth computing (a younger sampler falls back to avg10). */
export const MIN_WINDOW_MS = 200;

export type PsiSource = 'window' | 'avg10';

/**
 * The sample to measure the window against: the newest one at least `windowMs` older than `cur`,
 * else the oldest one at least `minMs` older (a young sampler), else none.
 */
function baseline(samples: readonly IoSample[], cur: IoSample, windowMs: number, minMs: number) {
  let best: IoSample | undefined;
  for (const s of samples) {
    const age = cur.atMs - s.atMs;
    if (age >= windowMs && (!best || s.atMs > best.atMs)) best = s;
  }
  if (best) return best;
  const old = samples.filter((s) => cur.atMs - s.atMs >= minMs).sort((a, b) => a.atMs - b.atMs)[0];
  return old;
}

/**
 * Short-window I/O pressure from PSI's cumulative counters: stalled µs over elapsed µs, in %.
 * Falls back to the kernel's avg10 when there is no earlier sample with counters to compare with.
 * `samples` are the earlier samples, oldest first or in any order; `cur` is the newest.
 */
export function windowPressure(
  samples: readonly IoSample[],
  cur: IoSample,
  windowMs: number,
  minMs = MIN_WINDOW_MS,
): { psi: Psi; source: PsiSource } | undefined {
  if (!cur.psi) return undefined;
  const now = cur.psi.totalUs;
  const base =
    windowMs > 0 && now
      ? baseline(
          samples.filter((s) => s.psi?.totalUs),
          cur,
          windowMs,
          minMs,
        )
      : undefined;
  const then = base?.psi?.totalUs;
  if (!base || !then || !now) return { psi: cur.psi.avg10, source: 'avg10' };
  const elapsedUs = (cur.atMs - base.atMs) * 1000;
  const pct = (d: number) => Math.round(Math.min(100, Math.max(0, (d / elapsedUs) * 100)) * 10) / 10;
  return { psi: { some: pct(now.some - then.some), full: pct(now.full - then.full) }, source: 'window' };
}

/** Measured write rate of containerd's volume over the window (MB/s); undefined when unknown. */
export function deviceWriteMBps(
  samples: readonly IoSample[],
  cur: IoSample,
  windowMs: number,
  minMs = MIN_WINDOW_MS,
): number | undefined {
  if (cur.writtenSectors === undefined) return undefined;
  const base = baseline(
    samples.filter((s) => s.writtenSectors !== undefined),
    cur,
    windowMs,
    minMs,
  );
  if (!base || base.writtenSectors === undefined) return undefined;
  const mb = (Math.max(0, cur.writtenSectors - base.writtenSectors) * 512) / (1024 * 1024);
  return Math.round((mb / ((cur.atMs - base.atMs) / 1000)) * 10) / 10;
}

export interface AdmissionState {
  nowMs: number;
  inFlight: readonly InFlight[];
  /** Start times of registry requests (pulls) in the last second or more. */
  recentStartsMs: readonly number[];
  /** undefined: PSI not available (kernel without CONFIG_PSI): the pressure check is skipped. */
  psi?: Psi;
  /**
   * Measured write rate of containerd's volume (MB/s, short window); undefined: unknown (no block
   * device behind the root, or no sample yet): the drain check is skipped and the budget uses the
   * estimate alone.
   */
  deviceMBps?: number;
  /** The candidate's estimated size (MB). */
  nextSizeMB: number;
  /**
   * Observed pull throughput (MB/s) of finished pulls on this node; undefined before the first.
   * Until then a pull is assumed to use the whole budget, so the first pulls go one at a time.
   */
  observedMBps?: number;
  /** Since when the candidate has been waiting (for the starvation guard). */
  waitingSinceMs: number;
  /** Consecutive waits for pressure while idle (drives the backoff; reset when a pull starts or ends). */
  pressureWaits: number;
}

export type WaitReason = 'concurrency' | 'qps' | 'pressure' | 'drain' | 'budget';
export type Decision =
  | { admit: true; reason: 'ok' | 'idle' | 'starved'; rateMBps: number }
  | { admit: false; reason: WaitReason; waitMs: number; rateMBps: number };

/** Expected write rate of one pull of `sizeMB` (MB/s): it cannot write faster than pulls do here. */
export function pullRate(sizeMB: number, policy: AdmissionPolicy, observedMBps?: number): number {
  const speed = observedMBps && observedMBps > 0 ? observedMBps : policy.budgetMBps;
  // A pull of sizeMB lasts sizeMB/speed seconds; over that time it writes sizeMB: rate = speed,
  // except that tiny images finish in well under a second and are not worth throttling for.
  const expectedS = Math.max(sizeMB / speed, 1);
  return Math.min(sizeMB / expectedS, policy.budgetMBps);
}

/** Current estimated write rate of the pulls in flight (MB/s). An overdue pull's rate decays. */
export function inFlightRate(s: AdmissionState, policy: AdmissionPolicy): number {
  let sum = 0;
  for (const f of s.inFlight) {
    const rate = pullRate(f.sizeMB, policy, s.observedMBps);
    const expectedMs = (f.sizeMB / rate) * 1000;
    const elapsedMs = Math.max(0, s.nowMs - f.startedMs);
    sum += elapsedMs > expectedMs ? (f.sizeMB * 1000) / elapsedMs : rate;
  }
  return sum;
}

const POLL_MS = 250;

export function decide(
  s: AdmissionState,
  policy: AdmissionPolicy = DEFAULT_POLICY,
  random: () => number = Math.random,
): Decision {
  const rateMBps = inFlightRate(s, policy);
  const wait = (reason: WaitReason, ms: number): Decision => ({
    admit: false,
    reason,
    waitMs: Math.max(1, Math.round(ms)),
    rateMBps,
  });
  // (c) hard caps, never overridden
  if (s.inFlight.length >= policy.maxConcurrent) return wait('concurrency', POLL_MS);
  const windowStart = s.nowMs - 1000;
  const recent = s.recentStartsMs.filter((t) => t > windowStart).sort((a, b) => a - b);
  if (recent.length >= policy.registryQps) {
    const oldest = recent[recent.length - policy.registryQps]!;
    return wait('qps', oldest + 1000 - s.nowMs + 1);
  }
  const idle = s.inFlight.length === 0;
  const starved = idle && s.nowMs - s.waitingSinceMs >= policy.maxWaitMs;
  if (starved) return { admit: true, reason: 'starved', rateMBps };
  // Our own backlog draining: the end is near and measured, so poll (no backoff).
  const measured = s.deviceMBps ?? 0;
  if (idle && policy.drain && measured >= policy.budgetMBps * DRAIN_SHARE) return wait('drain', POLL_MS);
  // (b) I/O pressure: a pressured disk is what makes pods fail to start
  const over = (v: number, threshold: number) => threshold < 100 && v >= threshold;
  if (s.psi && (over(s.psi.some, policy.pressure.some) || over(s.psi.full, policy.pressure.full))) {
    // With a pull in flight, its end changes the picture (and wakes the caller): poll the fresh
    // signal. Idle and drained, the pressure comes from someone else: back off with jitter.
    if (!idle) return wait('pressure', POLL_MS);
    const backoff = Math.min(policy.backoffMs.max, policy.backoffMs.base * 2 ** s.pressureWaits);
    const jittered = backoff * (0.5 + random());
    // Never wait past the starvation guard.
    const left = s.waitingSinceMs + policy.maxWaitMs - s.nowMs;
    return wait('pressure', Math.min(jittered, Math.max(left, 1)));
  }
  // (a) write budget, measured where possible: the volume's own write rate counts as much as the
  // estimate of the pulls in flight (whichever is higher).
  // One pull alone always may (it cannot be split).
  if (idle) return { admit: true, reason: 'idle', rateMBps };
  const next = pullRate(s.nextSizeMB, policy, s.observedMBps);
  if (Math.max(rateMBps, measured) + next > policy.budgetMBps) return wait('budget', POLL_MS);
  return { admit: true, reason: 'ok', rateMBps };
}

export interface QueueItem {
  image: string;
  /** Higher first. */
  priority: number;
  /** undefined: unknown (ordered after known sizes of the same priority). */
  sizeMB?: number;
}

/** Prefetch order: configured priority first (higher first), then smallest first, then as configured. */
export function orderQueue<T extends QueueItem>(items: readonly T[]): T[] {
  return items
    .map((item, i) => ({ item, i }))
    .sort(
      (a, b) =>
        b.item.priority - a.item.priority ||
        (a.item.sizeMB ?? Number.POSITIVE_INFINITY) - (b.item.sizeMB ?? Number.POSITIVE_INFINITY) ||
        a.i - b.i,
    )
    .map((x) => x.item);
}

/** Start spread for a fleet: a uniform delay in [0, windowMs). */
export const startJitterMs = (windowMs: number, random: () => number = Math.random): number =>
  windowMs > 0 ? Math.floor(random() * windowMs) : 0;
