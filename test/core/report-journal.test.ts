/** `report --source journal`: the last run's timeline rebuilt from journal entries (pure). */
import { describe, expect, it } from 'vitest';
import { type JournalJson, timelineFromJournal } from '../../src/commands/report.js';

let clock = 1_764_000_000_000_000; // µs
/** One entry as `journalctl -o json` prints it: every value a string. */
function entry(pid: number, fields: Record<string, string>, command = 'run'): JournalJson {
  clock += 1_000;
  return {
    __REALTIME_TIMESTAMP: String(clock),
    SYSLOG_IDENTIFIER: 'node-bootstrap',
    OBJECT_PID: String(pid),
    _PID: String(pid + 1_000 + (clock % 97)), // the short-lived sender's pid, never the run's
    NODE_BOOTSTRAP_COMMAND: command,
    ...fields,
  };
}
const phase = (pid: number, name: string, result: string, more: Record<string, string> = {}) =>
  entry(pid, { NODE_BOOTSTRAP_PHASE: name, NODE_BOOTSTRAP_RESULT: result, ...more });

describe('timelineFromJournal', () => {
  it('rebuilds the last run: phases in order, durations, warnings, facts, the verdict', () => {
    const entries = [
      // An earlier run of this boot, then a guard run: neither is the answer.
      phase(40, 'containerd-unit', 'started', { MESSAGE: '[1/2] containerd-unit: started' }),
      phase(40, 'containerd-unit', 'failed', {
        MESSAGE: '[1/2] containerd-unit: failed (ABORTED): phase containerd-unit stopped: received SIGTERM',
        NODE_BOOTSTRAP_ERROR: 'ABORTED',
        NODE_BOOTSTRAP_DURATION_MS: '9',
      }),
      entry(70, { NODE_BOOTSTRAP_PHASE: 'cri', NODE_BOOTSTRAP_RESULT: 'ok' }, 'guard'),
      phase(41, 'containerd-unit', 'started', { MESSAGE: '[1/2] containerd-unit: started' }),
      phase(41, 'containerd-unit', 'ok', { NODE_BOOTSTRAP_DURATION_MS: '12', MESSAGE: 'done' }),
      phase(41, 'sandbox-image', 'started', { MESSAGE: '[2/2] sandbox-image: started' }),
      phase(41, 'sandbox-image', 'warning', { MESSAGE: 'sandbox-image: pause image not pinned' }),
      entry(41, {
        NODE_BOOTSTRAP_PHASE: 'sandbox-image',
        NODE_BOOTSTRAP_IMAGE: 'r.example/eks/pause:3.10',
        NODE_BOOTSTRAP_SOURCE: 'r.example/eks/pause:3.10',
        MESSAGE: 'sandbox image from its registry',
      }),
      phase(41, 'sandbox-image', 'ok', { NODE_BOOTSTRAP_DURATION_MS: '95', MESSAGE: 'done' }),
      entry(41, {
        NODE_BOOTSTRAP_RESULT: 'ok',
        NODE_BOOTSTRAP_DURATION_MS: '130',
        MESSAGE: 'node-bootstrap 1.2.3 run: OK in 130 ms',
      }),
      // stdout of the unit (SyslogIdentifier=node-bootstrap): no fields, ignored.
      {
        __REALTIME_TIMESTAMP: String(clock + 5),
        MESSAGE: 'node-bootstrap: OK 2/2 phases in 0.13s warnings=1',
      },
    ];
    const st = timelineFromJournal(entries)!;
    expect(st).toMatchObject({ command: 'run', version: '1.2.3', pid: 41, result: 'ok', exitCode: 0 });
    expect(st.phases).toEqual([
      expect.objectContaining({ name: 'containerd-unit', result: 'ok', durationMs: 12, warnings: [] }),
      expect.objectContaining({
        name: 'sandbox-image',
        result: 'ok',
        durationMs: 95,
        warnings: ['pause image not pinned'],
        facts: { image: 'r.example/eks/pause:3.10', source: 'r.example/eks/pause:3.10' },
      }),
    ]);
    expect(Date.parse(st.finishedAt!) - Date.parse(st.startedAt)).toBe(6);
  });

  it('a failed run: the error with its hint, the exit code of its code; an unfinished one is running', () => {
    const failed = timelineFromJournal([
      phase(7, 'containerd-unit', 'started', { MESSAGE: '[1/6] containerd-unit: started' }),
      phase(7, 'containerd-unit', 'failed', {
        MESSAGE: '[1/6] containerd-unit: failed (CONTAINERD_UNIT_FAILED): containerd.service keeps failing',
        NODE_BOOTSTRAP_ERROR: 'CONTAINERD_UNIT_FAILED',
        NODE_BOOTSTRAP_RETRYABLE: 'false',
        NODE_BOOTSTRAP_HINT: 'read `journalctl -u containerd.service -b`',
        NODE_BOOTSTRAP_DURATION_MS: '5012',
      }),
      entry(7, {
        NODE_BOOTSTRAP_RESULT: 'failed',
        NODE_BOOTSTRAP_ERROR: 'CONTAINERD_UNIT_FAILED',
        MESSAGE: 'node-bootstrap 0.1.0 run: FAILED (CONTAINERD_UNIT_FAILED) in 5013 ms',
      }),
    ])!;
    expect(failed).toMatchObject({ result: 'failed', exitCode: 69 });
    expect(failed.phases[0]).toMatchObject({
      result: 'failed',
      durationMs: 5012,
      error: {
        code: 'CONTAINERD_UNIT_FAILED',
        message: 'containerd.service keeps failing',
        retryable: false,
        hint: 'read `journalctl -u containerd.service -b`',
      },
    });

    const running = timelineFromJournal([phase(8, 'cri', 'started', { MESSAGE: '[1/1] cri: started' })])!;
    expect(running).toMatchObject({ result: 'running', phases: [{ name: 'cri', result: 'not-run' }] });
    expect(running.finishedAt).toBeUndefined();
  });

  it('the same pid starting over is a new run; no run at all is undefined', () => {
    const st = timelineFromJournal([
      phase(9, 'cri', 'started', { MESSAGE: '[1/1] cri: started' }),
      phase(9, 'cri', 'failed', {
        MESSAGE: '[1/1] cri: failed (CRI_NOT_READY): x',
        NODE_BOOTSTRAP_ERROR: 'CRI_NOT_READY',
      }),
      phase(9, 'cri', 'started', { MESSAGE: '[1/1] cri: started' }),
      phase(9, 'cri', 'ok', { NODE_BOOTSTRAP_DURATION_MS: '3' }),
    ])!;
    expect(st.phases).toEqual([expect.objectContaining({ name: 'cri', result: 'ok', durationMs: 3 })]);
    expect(timelineFromJournal([])).toBeUndefined();
    expect(timelineFromJournal([entry(1, { NODE_BOOTSTRAP_PHASE: 'cri' }, 'guard')])).toBeUndefined();
  });
});
