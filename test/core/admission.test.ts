import { describe, expect, it } from 'vitest';
import { parsePsi } from '../../src/adapters/psi.js';
import {
  type AdmissionPolicy,
  type AdmissionState,
  DEFAULT_POLICY,
  decide,
  inFlightRate,
  orderQueue,
  pullRate,
  startJitterMs,
} from '../../src/core/admission.js';

const NOW = 100_000;
const st = (over: Partial<AdmissionState> = {}): AdmissionState => ({
  nowMs: NOW,
  inFlight: [],
  recentStartsMs: [],
  psi: { some: 0, full: 0 },
  nextSizeMB: 100,
  waitingSinceMs: NOW,
  pressureWaits: 0,
  ...over,
});
const pol = (over: Partial<AdmissionPolicy> = {}): AdmissionPolicy => ({ ...DEFAULT_POLICY, ...over });
/** random() = 0.5: jitter factor exactly 1. */
const mid = () => 0.5;
const busy = (n: number, sizeMB = 100, startedMs = NOW - 100) =>
  Array.from({ length: n }, () => ({ sizeMB, startedMs }));

describe('decide: given state → admit / wait(ms)', () => {
  it.each<[string, AdmissionState, AdmissionPolicy, string, number | undefined]>([
    // name, state, policy, expected (admit reason | wait reason), expected wait ms
    ['idle node, quiet disk', st(), pol(), 'idle', undefined],
    ['PSI unavailable: the check is skipped', st({ psi: undefined }), pol(), 'idle', undefined],
    ['concurrency cap reached', st({ inFlight: busy(2, 10) }), pol(), 'concurrency', 250],
    ['cap of 1', st({ inFlight: busy(1, 10) }), pol({ maxConcurrent: 1 }), 'concurrency', 250],
    [
      'registry QPS cap: 5 starts in the last second, oldest 400 ms ago',
      st({ recentStartsMs: [NOW - 400, NOW - 300, NOW - 200, NOW - 100, NOW - 50] }),
      pol({ maxConcurrent: 10 }),
      'qps',
      601,
    ],
    [
      'starts older than a second do not count',
      st({ recentStartsMs: [NOW - 1500, NOW - 1200, NOW - 1100, NOW - 1001, NOW - 1000] }),
      pol(),
      'idle',
      undefined,
    ],
    ['some pressure at threshold', st({ psi: { some: 20, full: 0 } }), pol(), 'pressure', 500],
    ['full pressure over threshold', st({ psi: { some: 3, full: 7.5 } }), pol(), 'pressure', 500],
    ['backoff doubles', st({ psi: { some: 50, full: 0 }, pressureWaits: 2 }), pol(), 'pressure', 2000],
    ['backoff is capped', st({ psi: { some: 50, full: 0 }, pressureWaits: 10 }), pol(), 'pressure', 5000],
    [
      'idle pressure wait never runs past the starvation guard',
      st({ psi: { some: 90, full: 40 }, pressureWaits: 10, waitingSinceMs: NOW - 29_000 }),
      pol(),
      'pressure',
      1000,
    ],
    [
      'starved: idle and waited maxWait → admitted despite pressure',
      st({ psi: { some: 90, full: 40 }, waitingSinceMs: NOW - 30_000 }),
      pol(),
      'starved',
      undefined,
    ],
    [
      'not starved while something is in flight (it makes progress)',
      st({ psi: { some: 90, full: 40 }, waitingSinceMs: NOW - 60_000, inFlight: busy(1, 10) }),
      pol(),
      'pressure',
      500,
    ],
    [
      'budget: first pulls are assumed to use the whole budget → one at a time',
      st({ inFlight: busy(1, 500) }),
      pol(),
      'budget',
      250,
    ],
    [
      'budget: observed 40 MB/s per pull, 1 in flight → a second fits under 125',
      st({ inFlight: busy(1, 500), observedMBps: 40 }),
      pol(),
      'ok',
      undefined,
    ],
    [
      'budget: observed 40 MB/s, 3 in flight → 160 > 125, wait',
      st({ inFlight: busy(3, 500), observedMBps: 40 }),
      pol({ maxConcurrent: 5 }),
      'budget',
      250,
    ],
    [
      'budget: small images (1 s minimum duration) fit beside each other',
      st({ inFlight: busy(1, 30), nextSizeMB: 30 }),
      pol(),
      'ok',
      undefined,
    ],
    [
      'budget: an overdue pull is charged its actual, lower rate',
      st({ inFlight: busy(1, 500, NOW - 20_000), observedMBps: 100 }),
      pol(),
      'ok',
      undefined,
    ],
  ])('%s', (_name, state, policy, expected, waitMs) => {
    const d = decide(state, policy, mid);
    if (d.admit) {
      expect(waitMs).toBeUndefined();
      expect(d.reason).toBe(expected);
    } else {
      expect(d.reason).toBe(expected);
      expect(d.waitMs).toBe(waitMs);
    }
  });

  it('pressure backoff is jittered within ±50%', () => {
    const s = st({ psi: { some: 50, full: 0 }, pressureWaits: 1 });
    expect(decide(s, pol(), () => 0)).toMatchObject({ admit: false, waitMs: 500 });
    expect(decide(s, pol(), () => 0.999_999)).toMatchObject({ admit: false, waitMs: 1500 });
  });

  it('the caps win over the starvation guard', () => {
    const s = st({ inFlight: busy(2, 1), waitingSinceMs: 0, psi: { some: 99, full: 99 } });
    expect(decide(s, pol(), mid)).toMatchObject({ admit: false, reason: 'concurrency' });
  });
});

describe('write-rate estimate', () => {
  it.each([
    [500, undefined, 125],
    [500, 40, 40],
    [30, undefined, 30],
    [0.5, 40, 0.5],
    [500, 400, 125],
  ])('pull of %d MB at observed %s MB/s → %d MB/s', (size, observed, rate) =>
    expect(pullRate(size, DEFAULT_POLICY, observed)).toBeCloseTo(rate),
  );
  it('sums in-flight pulls', () => {
    expect(inFlightRate(st({ inFlight: busy(2, 500), observedMBps: 40 }), DEFAULT_POLICY)).toBeCloseTo(80);
  });
});

describe('orderQueue', () => {
  it('priority first (higher first), then smallest first, unknown sizes last, then as configured', () => {
    const q = orderQueue([
      { image: 'a', priority: 0, sizeMB: 300 },
      { image: 'b', priority: 0 },
      { image: 'c', priority: 10, sizeMB: 900 },
      { image: 'd', priority: 0, sizeMB: 20 },
      { image: 'e', priority: 0 },
      { image: 'f', priority: 10, sizeMB: 5 },
    ]);
    expect(q.map((i) => i.image)).toEqual(['f', 'c', 'd', 'a', 'b', 'e']);
  });
});

describe('startJitterMs', () => {
  it.each([
    [30_000, 0, 0],
    [30_000, 0.5, 15_000],
    [30_000, 0.999_99, 29_999],
    [0, 0.7, 0],
  ])('window %d, random %d → %d', (w, r, ms) => expect(startJitterMs(w, () => r)).toBe(ms));
});

describe('parsePsi', () => {
  it('reads avg10 of some and full', () => {
    const text =
      'some avg10=12.34 avg60=0.36 avg300=0.69 total=31592067\nfull avg10=1.50 avg60=0.02 avg300=0.10 total=17653637\n';
    expect(parsePsi(text)).toEqual({ some: 12.34, full: 1.5 });
  });
  it.each(['', 'garbage', 'full avg10=1.00 avg60=0 avg300=0 total=0'])('%j → undefined', (t) =>
    expect(parsePsi(t)).toBeUndefined(),
  );
  it('a kernel without the full line (before 5.x) gives full=0', () => {
    expect(parsePsi('some avg10=3.00 avg60=0 avg300=0 total=1')).toEqual({ some: 3, full: 0 });
  });
});
