/** Verdicts on a systemd unit's state: pure, from the properties systemd reports over D-Bus. */

export interface UnitState {
  loadState: string;
  activeState: string;
  subState: string;
  /** The unit's Result (e.g. exit-code, timeout, start-limit-hit, success). */
  result: string;
  /** True when a start/stop job is queued for the unit. */
  hasJob: boolean;
}

export type UnitVerdict =
  | { kind: 'active' }
  | { kind: 'waiting'; why: string }
  | { kind: 'start'; why: string }
  | { kind: 'missing'; why: string }
  | { kind: 'failed'; why: string };

export function unitVerdict(unit: string, s: UnitState): UnitVerdict {
  if (s.loadState === 'not-found')
    return { kind: 'missing', why: `${unit} is not installed (LoadState=not-found)` };
  if (s.loadState === 'masked') return { kind: 'missing', why: `${unit} is masked` };
  if (s.loadState === 'error' || s.loadState === 'bad-setting')
    return {
      kind: 'failed',
      why: `${unit} cannot be loaded (LoadState=${s.loadState}): its unit file is broken`,
    };
  if (s.activeState === 'active' || s.activeState === 'reloading') return { kind: 'active' };
  if (s.activeState === 'failed')
    return { kind: 'failed', why: `${unit} failed (Result=${s.result}, SubState=${s.subState})` };
  if (s.activeState === 'inactive' && !s.hasJob)
    return { kind: 'start', why: `${unit} is inactive and nothing is starting it` };
  return { kind: 'waiting', why: `${unit} is ${s.activeState}${s.subState ? ` (${s.subState})` : ''}` };
}
