import { describe, expect, it } from 'vitest';
import { parsePsi, parsePsiReading, parseWrittenSectors } from '../../src/adapters/psi.js';
import {
  type AdmissionPolicy,
  type AdmissionState,
  DEFAULT_POLICY,
  decide,
  deviceWriteMBps,
  type IoSample,
  inFlightRate,
  orderQueue,
  pullRate,
  startJitterMs,
  windowPressure,
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
    ['some pressure at threshold', st({ psi: { some: 20, full: 0 } }), pol(), 'pressure', 250],
    ['full pressure over threshold', st({ psi: { some: 3, full: 7.5 } }), pol(), 'pressure', 250],
    [
      'a threshold of 100 is off (a window can read exactly 100%)',
      st({ psi: { some: 100, full: 100 } }),
      pol({ pressure: { some: 100, full: 100 } }),
      'idle',
      undefined,
    ],
    ['backoff doubles', st({ psi: { some: 50, full: 0 }, pressureWaits: 2 }), pol(), 'pressure', 1000],
    ['backoff is capped', st({ psi: { some: 50, full: 0 }, pressureWaits: 10 }), pol(), 'pressure', 2000],
    [
      'pressure with a pull in flight: poll (its end wakes the loop), no growing backoff',
      st({ psi: { some: 90, full: 30 }, pressureWaits: 10, inFlight: busy(1, 10) }),
      pol(),
      'pressure',
      250,
    ],
    [
      'idle pressure wait never runs past the starvation guard',
      st({ psi: { some: 90, full: 40 }, pressureWaits: 10, waitingSinceMs: NOW - 29_500 }),
      pol(),
      'pressure',
      500,
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
      250,
    ],
    [
      'drain: idle, but the volume still writes at half the budget or more (a backlog draining)',
      st({ deviceMBps: 62.5 }),
      pol(),
      'drain',
      250,
    ],
    [
      'drained: idle, the volume writes under half the budget',
      st({ deviceMBps: 62 }),
      pol(),
      'idle',
      undefined,
    ],
    [
      'drain off: the backlog does not hold the next pull',
      st({ deviceMBps: 125 }),
      pol({ drain: false }),
      'idle',
      undefined,
    ],
    [
      'draining beats pressure: our own backlog is polled, not backed off from',
      st({ deviceMBps: 80, psi: { some: 90, full: 10 }, pressureWaits: 5 }),
      pol(),
      'drain',
      250,
    ],
    [
      'drain applies only when idle (with a pull in flight the budget decides)',
      st({ deviceMBps: 90, inFlight: busy(1, 500), observedMBps: 40 }),
      pol(),
      'budget',
      250,
    ],
    [
      'starved beats drain: idle and waited maxWait',
      st({ deviceMBps: 125, waitingSinceMs: NOW - 30_000 }),
      pol(),
      'starved',
      undefined,
    ],
    [
      'budget, measured: one pull estimated at 40 MB/s but the volume writes 100 → no second',
      st({ inFlight: busy(1, 500), observedMBps: 40, deviceMBps: 100 }),
      pol(),
      'budget',
      250,
    ],
    [
      'budget, measured: the volume writes less than estimated → the estimate counts',
      st({ inFlight: busy(1, 500), observedMBps: 40, deviceMBps: 10 }),
      pol(),
      'ok',
      undefined,
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
    expect(decide(s, pol(), () => 0)).toMatchObject({ admit: false, waitMs: 250 });
    expect(decide(s, pol(), () => 0.999_999)).toMatchObject({ admit: false, waitMs: 750 });
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

/** A sample at `atMs` with PSI counters (µs) and a device write counter (sectors). */
const at = (atMs: number, someUs?: number, fullUs = 0, sectors?: number): IoSample => ({
  atMs,
  psi: {
    avg10: { some: 42, full: 4 },
    ...(someUs === undefined ? {} : { totalUs: { some: someUs, full: fullUs } }),
  },
  writtenSectors: sectors,
});

describe('windowPressure: stalled µs over elapsed µs, from the total= counters', () => {
  it.each<[string, IoSample[], IoSample, number, unknown]>([
    ['no earlier sample → avg10', [], at(1000, 0), 1000, { psi: { some: 42, full: 4 }, source: 'avg10' }],
    [
      'half of the last second stalled (some), a tenth (full)',
      [at(0, 1_000_000, 200_000)],
      at(1000, 1_500_000, 300_000),
      1000,
      { psi: { some: 50, full: 10 }, source: 'window' },
    ],
    [
      'takes the newest sample at least a window old, not an older one',
      [at(0, 0), at(500, 100_000), at(1200, 900_000)],
      at(1500, 1_000_000),
      1000,
      { psi: { some: 90, full: 0 }, source: 'window' },
    ],
    [
      'a burst that ended: the window sees it gone at once (avg10 would still say 42)',
      [at(0, 5_000_000), at(1000, 5_000_000)],
      at(2000, 5_000_000),
      1000,
      { psi: { some: 0, full: 0 }, source: 'window' },
    ],
    [
      'young sampler: the oldest sample ≥ 200 ms old is used',
      [at(800, 0)],
      at(1100, 150_000),
      1000,
      { psi: { some: 50, full: 0 }, source: 'window' },
    ],
    ['young sampler, under 200 ms → avg10', [at(1000, 0)], at(1100, 50_000), 1000, { source: 'avg10' }],
    ['kernel without total= → avg10', [at(0)], at(1000), 1000, { source: 'avg10' }],
    ['window 0 → avg10 (configured)', [at(0, 0)], at(1000, 500_000), 0, { source: 'avg10' }],
    [
      'counter reset (negative delta) is clamped to 0',
      [at(0, 9_000_000)],
      at(1000, 0),
      1000,
      { psi: { some: 0 } },
    ],
  ])('%s', (_name, earlier, cur, windowMs, expected) =>
    expect(windowPressure(earlier, cur, windowMs)).toMatchObject(expected as object),
  );
  it('undefined when PSI is unavailable', () => {
    expect(windowPressure([], { atMs: 0 }, 1000)).toBeUndefined();
  });
});

describe('deviceWriteMBps: block-layer sectors written over the window', () => {
  it.each<[string, IoSample[], IoSample, number | undefined]>([
    ['60 MB in one second', [at(0, 0, 0, 0)], at(1000, 0, 0, 60 * 2048), 60],
    ['30 MB in two seconds', [at(0, 0, 0, 0)], at(2000, 0, 0, 30 * 2048), 15],
    [
      'uses the newest sample a window old',
      [at(0, 0, 0, 0), at(1000, 0, 0, 100 * 2048)],
      at(2000, 0, 0, 100 * 2048),
      0,
    ],
    ['no earlier sample', [], at(1000, 0, 0, 5), undefined],
    ['no block device', [at(0)], at(1000), undefined],
  ])('%s → %s', (_name, earlier, cur, mbps) => expect(deviceWriteMBps(earlier, cur, 1000)).toBe(mbps));
});

describe('parsePsiReading / parseWrittenSectors', () => {
  it('reads avg10 and total of both lines', () => {
    const text =
      'some avg10=12.34 avg60=0.36 avg300=0.69 total=31592067\nfull avg10=1.50 avg60=0.02 avg300=0.10 total=17653637\n';
    expect(parsePsiReading(text)).toEqual({
      avg10: { some: 12.34, full: 1.5 },
      totalUs: { some: 31_592_067, full: 17_653_637 },
    });
  });
  it('without total= there are no counters', () => {
    expect(parsePsiReading('some avg10=3.00 avg60=0 avg300=0')).toEqual({ avg10: { some: 3, full: 0 } });
  });
  it('block stat: field 7 is sectors written', () => {
    const text =
      '    4315     1186   340034     1384   151120   167990  8693376   283244        0   211780   289000        0        0        0        0     3344     4371\n';
    expect(parseWrittenSectors(text)).toBe(8_693_376);
    expect(parseWrittenSectors('garbage')).toBeUndefined();
  });
});
