import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { describe, expect, it } from 'vitest';
import {
  escapeLabelValue,
  type Family,
  formatValue,
  type MetricsPrefetch,
  type MetricsRun,
  metricsFile,
  prefetchFamilies,
  renderMetrics,
  runFamilies,
} from '../../src/core/metrics.js';

/** The rendered text read back by an independent parser: name → [labels, value] pairs. */
function parsed(
  text: string,
): Record<string, { type: string; help: string; samples: [Record<string, string>, number][] }> {
  const out: Record<string, { type: string; help: string; samples: [Record<string, string>, number][] }> = {};
  for (const f of parsePrometheusTextFormat(text)) {
    expect(out[f.name], `${f.name} appears once`).toBeUndefined();
    out[f.name] = {
      type: f.type,
      help: f.help,
      samples: f.metrics.map((m) => {
        expect(m.timestamp_ms, 'no timestamps in a textfile').toBeUndefined();
        return [m.labels ?? {}, Number(m.value)];
      }),
    };
  }
  return out;
}

describe('renderMetrics', () => {
  it.each([
    ['plain', 'plain'],
    ['a"b', 'a\\"b'],
    ['back\\slash', 'back\\\\slash'],
    ['two\nlines', 'two\\nlines'],
    ['ünï €', 'ünï €'],
  ])('label value %j → %j', (v, escaped) => expect(escapeLabelValue(v)).toBe(escaped));

  it.each([
    [0, '0'],
    [1.5, '1.5'],
    [-2, '-2'],
    [1e21, '1e+21'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, '+Inf'],
    [Number.NEGATIVE_INFINITY, '-Inf'],
  ])('value %d → %s', (v, s) => expect(formatValue(v)).toBe(s));

  it('HELP and TYPE once per family, then its samples; escapes survive a real parser', () => {
    const fams: Family[] = [
      {
        name: 'x_info',
        help: 'a help with a \\ and a\nnewline',
        type: 'gauge',
        samples: [{ labels: { version: 'v"1\\2\n3', empty: '' }, value: 1 }],
      },
      { name: 'x_none', help: 'no samples: left out', type: 'gauge', samples: [] },
      { name: 'x_total', help: 'c', type: 'counter', samples: [{ value: 3 }] },
    ];
    const text = renderMetrics(fams);
    expect(text).toBe(
      [
        '# HELP x_info a help with a \\\\ and a\\nnewline',
        '# TYPE x_info gauge',
        'x_info{version="v\\"1\\\\2\\n3",empty=""} 1',
        '# HELP x_total c',
        '# TYPE x_total counter',
        'x_total 3',
        '',
      ].join('\n'),
    );
    expect(parsed(text)).toEqual({
      x_info: {
        type: 'GAUGE',
        help: 'a help with a \\ and a\nnewline',
        samples: [[{ version: 'v"1\\2\n3', empty: '' }, 1]],
      },
      x_total: { type: 'COUNTER', help: 'c', samples: [[{}, 3]] },
    });
    expect(renderMetrics([])).toBe('');
  });

  it.each([
    [{ name: '1bad', help: '', type: 'gauge', samples: [{ value: 1 }] }, /invalid metric name/],
    [
      { name: 'ok', help: '', type: 'gauge', samples: [{ labels: { 'a-b': 'x' }, value: 1 }] },
      /invalid label name/,
    ],
    [
      { name: 'ok', help: '', type: 'gauge', samples: [{ labels: { __name: 'x' }, value: 1 }] },
      /invalid label name/,
    ],
  ] as [Family, RegExp][])('rejects %j', (f, re) => expect(() => renderMetrics([f])).toThrow(re));

  it('a family defined twice is an error (node_exporter would fail the whole collector)', () => {
    const f: Family = { name: 'a', help: '', type: 'gauge', samples: [{ value: 1 }] };
    expect(() => renderMetrics([f, f])).toThrow(/defined twice/);
  });
});

const T0 = '2026-12-01T22:00:00.000Z';
const run = (over: Partial<MetricsRun> = {}): MetricsRun => ({
  version: '0.1.0',
  command: 'run',
  startedAt: T0,
  finishedAt: '2026-12-01T22:00:04.210Z',
  result: 'ok',
  exitCode: 0,
  phases: [
    { name: 'containerd-unit', result: 'skipped', warnings: [], facts: {} },
    {
      name: 'cri',
      result: 'ok',
      durationMs: 120,
      warnings: ['old'],
      facts: { containerdVersion: '1.7.24~ds1' },
    },
    { name: 'sandbox-image', result: 'ok', durationMs: 3300, warnings: [], facts: {} },
    { name: 'kubelet', result: 'ok', durationMs: 250, warnings: [], facts: {} },
  ],
  ...over,
});

describe('runFamilies', () => {
  const now = new Date('2026-12-01T22:00:10.000Z');

  it('a passed run: info, run gauges, per-phase duration/success/warnings; skipped phases absent', () => {
    const m = parsed(renderMetrics(runFamilies(run(), now)));
    expect(m.node_bootstrap_info?.samples).toEqual([
      [{ version: '0.1.0', containerd_version: '1.7.24~ds1' }, 1],
    ]);
    expect(m.node_bootstrap_run_timestamp_seconds?.samples).toEqual([[{}, Date.parse(T0) / 1000]]);
    expect(m.node_bootstrap_run_duration_seconds?.samples).toEqual([[{}, 4.21]]);
    expect(m.node_bootstrap_run_finished?.samples).toEqual([[{}, 1]]);
    expect(m.node_bootstrap_run_success?.samples).toEqual([[{}, 1]]);
    expect(m.node_bootstrap_run_exit_code?.samples).toEqual([[{}, 0]]);
    expect(m.node_bootstrap_run_error).toBeUndefined();
    expect(m.node_bootstrap_phase_duration_seconds?.samples).toEqual([
      [{ phase: 'cri' }, 0.12],
      [{ phase: 'sandbox-image' }, 3.3],
      [{ phase: 'kubelet' }, 0.25],
    ]);
    expect(m.node_bootstrap_phase_success?.samples).toEqual([
      [{ phase: 'cri' }, 1],
      [{ phase: 'sandbox-image' }, 1],
      [{ phase: 'kubelet' }, 1],
    ]);
    expect(m.node_bootstrap_phase_warnings?.samples).toEqual([
      [{ phase: 'cri' }, 1],
      [{ phase: 'sandbox-image' }, 0],
      [{ phase: 'kubelet' }, 0],
    ]);
    for (const f of Object.values(m)) expect(f.type).toBe('GAUGE');
  });

  it('a failed run: success 0, the exit code, the error with phase and code; phases after it are 0', () => {
    const st = run({ result: 'failed', exitCode: 69 });
    st.phases = [
      st.phases[1]!,
      {
        name: 'sandbox-image',
        result: 'failed',
        durationMs: 900,
        warnings: [],
        error: { code: 'PULL_UNAUTHORIZED' },
        facts: {},
      },
      { name: 'kubelet', result: 'not-run', warnings: [], facts: {} },
    ];
    const m = parsed(renderMetrics(runFamilies(st, now)));
    expect(m.node_bootstrap_run_success?.samples).toEqual([[{}, 0]]);
    expect(m.node_bootstrap_run_exit_code?.samples).toEqual([[{}, 69]]);
    expect(m.node_bootstrap_run_error?.samples).toEqual([
      [{ phase: 'sandbox-image', code: 'PULL_UNAUTHORIZED' }, 1],
    ]);
    expect(m.node_bootstrap_phase_success?.samples).toEqual([
      [{ phase: 'cri' }, 1],
      [{ phase: 'sandbox-image' }, 0],
      [{ phase: 'kubelet' }, 0],
    ]);
    expect(m.node_bootstrap_phase_duration_seconds?.samples.map(([l]) => l.phase)).toEqual([
      'cri',
      'sandbox-image',
    ]);
  });

  it('a run in progress: not finished, its duration so far, no exit code, phases not reached absent', () => {
    const st = run({ result: 'running', finishedAt: undefined, exitCode: undefined });
    st.phases = [st.phases[1]!, { name: 'kubelet', result: 'not-run', warnings: [], facts: {} }];
    const m = parsed(renderMetrics(runFamilies(st, now)));
    expect(m.node_bootstrap_run_finished?.samples).toEqual([[{}, 0]]);
    expect(m.node_bootstrap_run_duration_seconds?.samples).toEqual([[{}, 10]]);
    expect(m.node_bootstrap_run_exit_code).toBeUndefined();
    expect(m.node_bootstrap_phase_success?.samples).toEqual([[{ phase: 'cri' }, 1]]);
    // Before CRI answered, the containerd version is unknown: an empty label, not a missing series.
    const early = parsed(renderMetrics(runFamilies(run({ phases: [] }), now)));
    expect(early.node_bootstrap_info?.samples).toEqual([[{ version: '0.1.0', containerd_version: '' }, 1]]);
  });

  it('guard has its own prefix and file, so both files can sit in one collector directory', () => {
    const m = parsed(renderMetrics(runFamilies(run({ command: 'guard' }), now)));
    expect(Object.keys(m).every((k) => k.startsWith('node_bootstrap_guard_'))).toBe(true);
    expect(metricsFile('run')).toBe('node_bootstrap.prom');
    expect(metricsFile('guard')).toBe('node_bootstrap_guard.prom');
  });
});

describe('prefetchFamilies', () => {
  it('images by state (every state present), bytes pulled, pull and wait seconds, the exit code', () => {
    const t: MetricsPrefetch = {
      version: '0.1.0',
      startedAt: T0,
      finishedAt: '2026-12-01T22:01:00.000Z',
      result: 'failed',
      exitCode: 69,
      images: [
        { state: 'pulled', bytes: 1_000_000, durationMs: 2000, waitMs: 500, pressureWaitMs: 300 },
        { state: 'pulled', bytes: 500, durationMs: 1000, waitMs: 0, pressureWaitMs: 0 },
        { state: 'present', bytes: 7, waitMs: 0, pressureWaitMs: 0 },
        { state: 'failed', durationMs: 100, waitMs: 1200, pressureWaitMs: 1000 },
      ],
    };
    const m = parsed(renderMetrics(prefetchFamilies(t, new Date())));
    expect(m.node_bootstrap_prefetch_images?.samples).toEqual([
      [{ state: 'pulled' }, 2],
      [{ state: 'present' }, 1],
      [{ state: 'failed' }, 1],
      [{ state: 'cancelled' }, 0],
      [{ state: 'pending' }, 0],
      [{ state: 'pulling' }, 0],
    ]);
    expect(m.node_bootstrap_prefetch_pulled_bytes?.samples).toEqual([[{}, 1_000_500]]);
    expect(m.node_bootstrap_prefetch_pull_seconds?.samples).toEqual([[{}, 3.1]]);
    expect(m.node_bootstrap_prefetch_wait_seconds?.samples).toEqual([[{}, 1.7]]);
    expect(m.node_bootstrap_prefetch_pressure_wait_seconds?.samples).toEqual([[{}, 1.3]]);
    expect(m.node_bootstrap_prefetch_run_duration_seconds?.samples).toEqual([[{}, 60]]);
    expect(m.node_bootstrap_prefetch_run_exit_code?.samples).toEqual([[{}, 69]]);
    // No name in common with the run's file.
    const runNames = Object.keys(parsed(renderMetrics(runFamilies(run(), new Date()))));
    expect(Object.keys(m).filter((k) => runNames.includes(k))).toEqual([]);
  });
});
