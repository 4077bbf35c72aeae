import { describe, expect, it } from 'vitest';
import { type UnitState, unitVerdict } from '../../src/core/unit-state.js';
import { journalFields } from '../../src/log.js';

const s = (over: Partial<UnitState>): UnitState => ({
  loadState: 'loaded',
  activeState: 'inactive',
  subState: 'dead',
  result: 'success',
  hasJob: false,
  ...over,
});

describe('unitVerdict', () => {
  it.each([
    [s({ activeState: 'active', subState: 'running' }), 'active'],
    [s({ activeState: 'reloading' }), 'active'],
    [s({ activeState: 'activating', subState: 'start' }), 'waiting'],
    [s({ activeState: 'activating', subState: 'auto-restart' }), 'waiting'],
    [s({ activeState: 'inactive', hasJob: true }), 'waiting'],
    [s({ activeState: 'inactive', hasJob: false }), 'start'],
    [s({ activeState: 'failed', result: 'exit-code', subState: 'failed' }), 'failed'],
    [s({ loadState: 'not-found' }), 'missing'],
    [s({ loadState: 'masked' }), 'missing'],
    [s({ loadState: 'bad-setting' }), 'failed'],
  ])('%o → %s', (state, kind) => expect(unitVerdict('containerd.service', state).kind).toBe(kind));

  it('names the Result of a failed unit', () => {
    expect(
      unitVerdict('containerd.service', s({ activeState: 'failed', result: 'start-limit-hit' })),
    ).toEqual({
      kind: 'failed',
      why: 'containerd.service failed (Result=start-limit-hit, SubState=dead)',
    });
  });
});

describe('journalFields', () => {
  it('maps a phase log line to queryable fields with a syslog priority', () => {
    const line = JSON.stringify({
      level: 'error',
      msg: '[4/6] sandbox-image: failed (PULL_UNAUTHORIZED): refused',
      phase: 'sandbox-image',
      result: 'failed',
      durationMs: 812,
      code: 'PULL_UNAUTHORIZED',
      retryable: false,
      hint: 'check the node role',
      image: 'r.io/eks/pause:3.10',
      other: { nested: true },
    });
    expect(journalFields(line)).toEqual({
      MESSAGE: '[4/6] sandbox-image: failed (PULL_UNAUTHORIZED): refused',
      PRIORITY: 3,
      NODE_BOOTSTRAP_PHASE: 'sandbox-image',
      NODE_BOOTSTRAP_RESULT: 'failed',
      NODE_BOOTSTRAP_DURATION_MS: 812,
      NODE_BOOTSTRAP_ERROR: 'PULL_UNAUTHORIZED',
      NODE_BOOTSTRAP_RETRYABLE: false,
      NODE_BOOTSTRAP_HINT: 'check the node role',
      NODE_BOOTSTRAP_IMAGE: 'r.io/eks/pause:3.10',
    });
  });

  it('ignores what is not a log line', () => {
    expect(journalFields('not json')).toBeUndefined();
    expect(journalFields(JSON.stringify({ level: 'warn', msg: 'x' }))).toEqual({ MESSAGE: 'x', PRIORITY: 4 });
  });
});
