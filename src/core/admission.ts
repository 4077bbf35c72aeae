/**
 * I/O-aware admission for image prefetch (pure). containerd does the unpacking, so the only lever
 * is when, and how many, pulls start. Given what is in flight, the node's I/O pressure and the
 * recent registry requests, decide: admit the next image now, or wait (and for how long).
 *
 * Order of the checks: concurrency cap, registry QPS cap, I/O pressure (with backoff and jitter),
 * write-rate budget. Never starve: with nothing in flight, an image that has waited `maxWaitMs`
 * is admitted whatever the pressure says, so prefetch always makes progress.
 */

export interface AdmissionPolicy {
  /** Write budget of the node's volume in MB/s (gp3 baseline: 125). */
  budgetMBps: number;
  maxConcurrent: number;
  /** Registry request starts per second (a pull counts as one). */
  registryQps: number;
  /** PSI avg10 thresholds (%): at or above either, no new pull starts. */
  pressure: { some: number; full: number };
  /** Minimum progress: with nothing in flight, a pull starts after waiting this long at most. */
  maxWaitMs: number;
  /** Backoff while pressure is high: base * 2^n, capped, with ±50% jitter. */
  backoffMs: { base: number; max: number };
}

export const DEFAULT_POLICY: AdmissionPolicy = {
  budgetMBps: 125,
  maxConcurrent: 2,
  registryQps: 5,
  pressure: { some: 20, full: 5 },
  maxWaitMs: 30_000,
  backoffMs: { base: 500, max: 5_000 },
};

export interface InFlight {
  sizeMB: number;
  startedMs: number;
}

export interface Psi {
  /** avg10 of the "some" line, % */
  some: number;
  /** avg10 of the "full" line, % */
  full: number;
}

export interface AdmissionState {
  nowMs: number;
  inFlight: readonly InFlight[];
  /** Start times of registry requests (pulls) in the last second or more. */
  recentStartsMs: readonly number[];
  /** undefined: PSI not available (kernel without CONFIG_PSI): the pressure check is skipped. */
  psi?: Psi;
  /** The candidate's estimated size (MB). */
  nextSizeMB: number;
  /**
   * Observed pull throughput (MB/s) of finished pulls on this node; undefined before the first.
   * Until then a pull is assumed to use the whole budget, so the first pulls go one at a time.
   */
  observedMBps?: number;
  /** Since when the candidate has been waiting (for the starvation guard). */
  waitingSinceMs: number;
  /** Consecutive waits for pressure (drives the backoff). */
  pressureWaits: number;
}

export type WaitReason = 'concurrency' | 'qps' | 'pressure' | 'budget';
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
  // (b) I/O pressure: back off with jitter; a pressured disk is what makes pods fail to start
  if (s.psi && (s.psi.some >= policy.pressure.some || s.psi.full >= policy.pressure.full)) {
    const backoff = Math.min(policy.backoffMs.max, policy.backoffMs.base * 2 ** s.pressureWaits);
    const jittered = backoff * (0.5 + random());
    // Never wait past the starvation guard when idle.
    const left = idle ? s.waitingSinceMs + policy.maxWaitMs - s.nowMs : Number.POSITIVE_INFINITY;
    return wait('pressure', Math.min(jittered, Math.max(left, 1)));
  }
  // (a) write budget: one pull alone is always admitted (it cannot be split)
  if (idle) return { admit: true, reason: 'idle', rateMBps };
  const next = pullRate(s.nextSizeMB, policy, s.observedMBps);
  if (rateMBps + next > policy.budgetMBps) return wait('budget', POLL_MS);
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
