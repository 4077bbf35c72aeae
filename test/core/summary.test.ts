import { describe, expect, it } from 'vitest';
import { phaseLine, quote, type SummaryPhase, verdictLine } from '../../src/core/summary.js';

const p = (over: Partial<SummaryPhase> & { name: string }): SummaryPhase => ({
  result: 'ok',
  warnings: [],
  ...over,
});
const unauthorized = {
  code: 'PULL_UNAUTHORIZED',
  message: 'registry r.example refused the credentials\nfor eks/pause:3.10 (401)',
  retryable: false,
  hint: 'check the node role has ecr:BatchGetImage',
};

describe('phaseLine', () => {
  it.each<[SummaryPhase, string | undefined]>([
    [p({ name: 'cri', durationMs: 123 }), 'node-bootstrap: phase=cri done 0.12s'],
    [p({ name: 'cri', durationMs: 0 }), 'node-bootstrap: phase=cri done 0.00s'],
    [
      p({ name: 'resolv-conf', durationMs: 4, warnings: ['a', 'b'] }),
      'node-bootstrap: phase=resolv-conf done 0.00s warnings=2',
    ],
    [p({ name: 'kubelet', result: 'skipped' }), 'node-bootstrap: phase=kubelet skipped'],
    [p({ name: 'kubelet', result: 'not-run' }), undefined],
    [
      p({ name: 'sandbox-image', result: 'failed', durationMs: 3204, error: unauthorized }),
      'node-bootstrap: phase=sandbox-image FAILED code=PULL_UNAUTHORIZED 3.20s hint="check the node role has ecr:BatchGetImage" error="registry r.example refused the credentials for eks/pause:3.10 (401)"',
    ],
    [
      p({ name: 'cri', result: 'failed', durationMs: 10 }),
      'node-bootstrap: phase=cri FAILED code=INTERNAL 0.01s',
    ],
  ])('%o → %s', (phase, line) => expect(phaseLine(phase)).toBe(line));
});

describe('verdictLine', () => {
  const six = ['containerd-unit', 'containerd-socket', 'cri', 'sandbox-image', 'resolv-conf', 'kubelet'];
  it('OK: phases that passed out of all, the wall time, then warnings and skipped phases when any', () => {
    const all = six.map((name) => p({ name, durationMs: 10 }));
    expect(verdictLine({ command: 'run', phases: all, durationMs: 4213 })).toBe(
      'node-bootstrap: OK 6/6 phases in 4.21s',
    );
    const some = six.map((name, i) =>
      p({ name, result: i === 0 || i === 5 ? 'skipped' : 'ok', warnings: i === 2 ? ['x'] : [] }),
    );
    expect(verdictLine({ command: 'run', phases: some, durationMs: 90 })).toBe(
      'node-bootstrap: OK 4/6 phases in 0.09s warnings=1 skipped=containerd-unit,kubelet',
    );
    expect(verdictLine({ command: 'guard', phases: all.slice(0, 3), durationMs: 5 })).toBe(
      'node-bootstrap: OK 3/3 phases in 0.01s command=guard',
    );
  });

  it('FAILED: the failed phase, its code, retryable, and the hint last', () => {
    const phases = [
      p({ name: 'cri' }),
      p({ name: 'sandbox-image', result: 'failed', error: unauthorized }),
      p({ name: 'kubelet', result: 'not-run' }),
    ];
    expect(verdictLine({ command: 'run', phases, durationMs: 1, error: unauthorized })).toBe(
      'node-bootstrap: FAILED phase=sandbox-image code=PULL_UNAUTHORIZED retryable=false hint="check the node role has ecr:BatchGetImage"',
    );
    // A shutdown before any phase ended: no phase to name.
    const aborted = { code: 'ABORTED', retryable: true, hint: 're-run "it"' };
    expect(
      verdictLine({
        command: 'guard',
        phases: [p({ name: 'cri', result: 'not-run' })],
        durationMs: 1,
        error: aborted,
      }),
    ).toBe(
      'node-bootstrap: FAILED phase=none code=ABORTED retryable=true command=guard hint="re-run \\"it\\""',
    );
  });
});

describe('quote', () => {
  it('one line, JSON-quoted, bounded', () => {
    expect(quote('a\n\tb  "c"\\')).toBe('"a b \\"c\\"\\\\"');
    const long = quote('x'.repeat(1000));
    expect(long.length).toBe(402);
    expect(JSON.parse(long)).toMatch(/^x{399}…$/);
  });
});
