import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { BootError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import type { Phase, PhaseName } from '../../src/runner/phase.js';
import { retrying } from '../../src/runner/retry.js';
import { runPhases } from '../../src/runner/runner.js';
import { readStatus } from '../../src/runner/status.js';

function sink(): { lines: () => Record<string, unknown>[]; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const phase = (name: PhaseName, run: Phase['run'], timeoutMs = 1_000): Phase => ({ name, timeoutMs, run });

async function runWith(
  phases: Phase[],
  extra: { signal?: AbortSignal; skip?: PhaseName[]; runTimeoutMs?: number; keepGoing?: boolean } = {},
) {
  const out = sink();
  const stateDir = mkdtempSync(join(tmpdir(), 'nb-runner-'));
  const statuses: string[] = [];
  const summary: string[] = [];
  const saves: string[] = [];
  const outcome = await runPhases(phases, {
    command: 'run',
    version: '0.0.0-test',
    log: createLogger({ destination: out.stream }),
    signal: extra.signal ?? new AbortController().signal,
    skip: new Set(extra.skip ?? []),
    stateDir,
    notify: (s) => statuses.push(s),
    summary: (line) => summary.push(line),
    onSave: (st) => saves.push(st.result),
    ...(extra.runTimeoutMs !== undefined ? { runTimeoutMs: extra.runTimeoutMs } : {}),
    ...(extra.keepGoing ? { keepGoing: true } : {}),
  });
  return { ...outcome, logs: out.lines(), stateDir, statuses, summary, saves };
}

describe('runPhases', () => {
  it('runs phases in order, logs started/done with durations and keeps facts and warnings', async () => {
    const order: string[] = [];
    const r = await runWith([
      phase('containerd-socket', async (ctx) => {
        order.push('socket');
        ctx.record({ socket: '/x.sock' });
      }),
      phase('cri', async (ctx) => {
        order.push('cri');
        await delay(20);
        ctx.warn('containerd 1.6.20 does not honour the pinned label');
      }),
    ]);
    expect(order).toEqual(['socket', 'cri']);
    expect(r.error).toBeUndefined();
    expect(r.status.result).toBe('ok');
    expect(r.status.phases.map((p) => p.result)).toEqual(['ok', 'ok']);
    expect(r.status.phases[1]!.durationMs).toBeGreaterThanOrEqual(15);
    expect(r.status.phases[0]!.facts).toEqual({ socket: '/x.sock' });
    expect(r.status.phases[1]!.warnings).toEqual(['containerd 1.6.20 does not honour the pinned label']);
    const results = r.logs.map((l) => `${l.phase}:${l.result}`);
    expect(results).toEqual([
      'containerd-socket:started',
      'containerd-socket:ok',
      'cri:started',
      'cri:warning',
      'cri:ok',
    ]);
    expect(r.statuses.at(-1)).toBe('done: all gates passed');
    // One operator line per phase, as it ends; onSave sees every save, the last one final.
    expect(r.summary).toEqual([
      expect.stringMatching(/^node-bootstrap: phase=containerd-socket done \d+\.\d\ds$/),
      expect.stringMatching(/^node-bootstrap: phase=cri done \d+\.\d\ds warnings=1$/),
    ]);
    expect(r.saves.at(-1)).toBe('ok');
    expect(r.saves.slice(0, -1).every((x) => x === 'running')).toBe(true);
    // status.json is the same timeline, and no temp file is left behind
    expect(readStatus(r.stateDir)).toEqual(r.status);
    expect(readdirSync(r.stateDir)).toEqual(['status.json']);
  });

  it('stops at the first failure with its code, hint and exit code; later phases do not run', async () => {
    let laterRan = false;
    const r = await runWith([
      phase('cri', async () => {
        throw new BootError('CRI_UNIMPLEMENTED', 'containerd does not serve CRI');
      }),
      phase('kubelet', async () => {
        laterRan = true;
      }),
    ]);
    expect(laterRan).toBe(false);
    expect(r.error?.code).toBe('CRI_UNIMPLEMENTED');
    expect(r.error?.exitCode).toBe(78);
    expect(r.status.exitCode).toBe(78);
    expect(r.status.phases.map((p) => p.result)).toEqual(['failed', 'not-run']);
    expect(r.summary).toEqual([
      expect.stringMatching(
        /^node-bootstrap: phase=cri FAILED code=CRI_UNIMPLEMENTED \d+\.\d\ds hint="enable the CRI plugin.*" error="containerd does not serve CRI"$/,
      ),
    ]);
    const failed = r.logs.find((l) => l.result === 'failed')!;
    expect(failed).toMatchObject({ phase: 'cri', code: 'CRI_UNIMPLEMENTED', retryable: false });
    expect(String(failed.hint)).toMatch(/disabled_plugins/);
  });

  it('a phase past its deadline fails PHASE_TIMEOUT (retryable, exit 75) and its signal fired', async () => {
    let sawAbort = false;
    const r = await runWith([
      phase(
        'containerd-unit',
        (ctx) =>
          new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => {
              sawAbort = true;
              reject(ctx.signal.reason);
            }),
          ),
        100,
      ),
    ]);
    expect(sawAbort).toBe(true);
    expect(r.error).toMatchObject({ code: 'PHASE_TIMEOUT', retryable: true, exitCode: 75 });
    expect(r.error?.hint).toMatch(/timeouts\.containerd-unit/);
  });

  it('a shutdown signal aborts the running phase: ABORTED, nothing after it runs', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('received SIGTERM')), 50);
    let laterRan = false;
    const r = await runWith(
      [
        phase('cri', (ctx) => delay(10_000, undefined, { signal: ctx.signal })),
        phase('kubelet', async () => {
          laterRan = true;
        }),
      ],
      { signal: ac.signal },
    );
    expect(laterRan).toBe(false);
    expect(r.error?.code).toBe('ABORTED');
    expect(r.error?.message).toMatch(/SIGTERM/);
    expect(r.status.phases.map((p) => p.result)).toEqual(['failed', 'not-run']);
  });

  it('skips phases named in --skip', async () => {
    const r = await runWith([phase('cri', async () => {}), phase('kubelet', async () => {})], {
      skip: ['kubelet'],
    });
    expect(r.status.phases.map((p) => p.result)).toEqual(['ok', 'skipped']);
  });

  it('an unexpected exception is INTERNAL (exit 70), never retried', async () => {
    const r = await runWith([
      phase('cri', async () => {
        throw new TypeError('x is undefined');
      }),
    ]);
    expect(r.error).toMatchObject({ code: 'INTERNAL', exitCode: 70, retryable: false });
  });
});

describe('retrying', () => {
  it('retries retryable errors until success', async () => {
    let n = 0;
    const retries: number[] = [];
    const v = await retrying(
      AbortSignal.timeout(2_000),
      async () => {
        n++;
        if (n < 3) throw new BootError('CRI_NOT_READY', 'not yet');
        return 'ready';
      },
      { minDelayMs: 5, onRetry: (_e, a) => retries.push(a) },
    );
    expect(v).toBe('ready');
    expect(n).toBe(3);
    expect(retries).toEqual([1, 2]);
  });

  it('does not retry a non-retryable error', async () => {
    let n = 0;
    await expect(
      retrying(AbortSignal.timeout(2_000), async () => {
        n++;
        throw new BootError('CRI_UNIMPLEMENTED', 'no CRI');
      }),
    ).rejects.toMatchObject({ code: 'CRI_UNIMPLEMENTED' });
    expect(n).toBe(1);
  });

  it('at the deadline reports the last real failure, with the attempt count', async () => {
    const err = await retrying(
      AbortSignal.timeout(150),
      async () => {
        throw new BootError('CRI_NOT_READY', 'server is not initialized yet');
      },
      { minDelayMs: 10, maxDelayMs: 20 },
    ).catch((e: unknown) => e as BootError);
    expect(err.code).toBe('CRI_NOT_READY');
    expect(err.message).toMatch(
      /server is not initialized yet \(still failing at the deadline, after \d+ attempts\)/,
    );
  });

  it('a shutdown is not dressed up as the last failure', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('received SIGTERM')), 50);
    const err = await retrying(ac.signal, async () => {
      throw new BootError('CRI_NOT_READY', 'not yet');
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe('received SIGTERM');
  });
});

describe('runPhases: the run deadline (timeouts.run) and keepGoing (--observe)', () => {
  const waitForAbort: Phase['run'] = (ctx) =>
    new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));

  it('a phase is cut at the run deadline: RUN_TIMEOUT (retryable, exit 75), the next phases do not run', async () => {
    const r = await runWith(
      [
        phase('containerd-socket', () => delay(150), 1_000),
        phase('cri', waitForAbort, 5_000),
        phase('sandbox-image', async () => {}, 1_000),
      ],
      { runTimeoutMs: 300 },
    );
    expect(r.error?.code).toBe('RUN_TIMEOUT');
    expect(r.error?.exitCode).toBe(75);
    expect(r.error?.message).toBe(
      "phase cri stopped at the run's deadline (timeouts.run: 0.3s for all phases)",
    );
    const cri = r.status.phases[1]!;
    // cut to what was left (~150 ms), not its own 5 s
    expect(cri.durationMs).toBeLessThan(1_000);
    expect(r.status.phases.map((p) => p.result)).toEqual(['ok', 'failed', 'not-run']);
  });

  it("a phase's own deadline, when shorter than what is left, is still PHASE_TIMEOUT", async () => {
    const r = await runWith([phase('cri', waitForAbort, 100)], { runTimeoutMs: 10_000 });
    expect(r.error?.code).toBe('PHASE_TIMEOUT');
  });

  it('nothing left of the run: the next phase fails RUN_TIMEOUT without starting', async () => {
    let ran = false;
    const r = await runWith(
      [
        phase('containerd-socket', () => delay(120), 1_000),
        phase('cri', async () => {
          ran = true;
        }),
      ],
      { runTimeoutMs: 100 },
    );
    expect(ran).toBe(false);
    expect(r.status.phases[1]).toMatchObject({ result: 'failed', error: { code: 'RUN_TIMEOUT' } });
  });

  it('keepGoing: every phase runs; the first failure is the verdict', async () => {
    const r = await runWith(
      [
        phase('containerd-socket', async () => {
          throw new BootError('CONFIG_NOT_APPLIED', 'stale');
        }),
        phase('cri', async () => {}),
        phase('sandbox-image', async () => {
          throw new BootError('SANDBOX_IMAGE_MISSING', 'missing');
        }),
      ],
      { keepGoing: true },
    );
    expect(r.status.phases.map((p) => [p.name, p.result, p.error?.code])).toEqual([
      ['containerd-socket', 'failed', 'CONFIG_NOT_APPLIED'],
      ['cri', 'ok', undefined],
      ['sandbox-image', 'failed', 'SANDBOX_IMAGE_MISSING'],
    ]);
    expect(r.error?.code).toBe('CONFIG_NOT_APPLIED');
    expect(r.status.exitCode).toBe(69);
  });
});

describe('log redaction', () => {
  it('never writes a secret-named field', () => {
    const out = sink();
    const log = createLogger({ destination: out.stream });
    log.info({ password: 'hunter2', auth: { password: 'x', username: 'AWS' }, token: 'tok' }, 'pulling');
    const line = JSON.stringify(out.lines());
    expect(line).not.toMatch(/hunter2|"tok"|"x"/);
    expect(line).toMatch(/\[redacted\]/);
  });
});
