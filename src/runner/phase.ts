import type { Logger } from '../log.js';

/** Stable phase identifiers: used by --skip, the journal, status.json and the report. */
export const PHASE_NAMES = [
  'containerd-unit',
  'containerd-socket',
  'cri',
  'sandbox-image',
  'resolv-conf',
  'kubelet',
] as const;
export type PhaseName = (typeof PHASE_NAMES)[number];

export const isPhaseName = (s: string): s is PhaseName => (PHASE_NAMES as readonly string[]).includes(s);

export interface PhaseContext {
  /** Aborted on the phase deadline or on SIGTERM/SIGINT. Every wait must honour it. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** A short live status line (sd_notify STATUS= under systemd). */
  status(text: string): void;
  /** A warning that does not fail the phase but is kept in the timeline (status.json, report). */
  warn(message: string): void;
  /** Facts worth keeping in the timeline (image, source, digest, versions...). Never secrets. */
  record(facts: Record<string, string | number | boolean>): void;
}

export interface Phase {
  readonly name: PhaseName;
  /** Deadline for the whole phase, retries included. */
  readonly timeoutMs: number;
  run(ctx: PhaseContext): Promise<void>;
}

/** True when the signal fired because a deadline passed (not because of a shutdown). */
export const isDeadline = (signal: AbortSignal): boolean =>
  signal.aborted && (signal.reason as { name?: string } | undefined)?.name === 'TimeoutError';
