/**
 * The operator's lines on stdout (and the console, under systemd): one per phase and one verdict,
 * each self-contained, because some log pipelines keep only MESSAGE and drop every field. Pure.
 *
 *   node-bootstrap: phase=cri done 0.12s
 *   node-bootstrap: phase=resolv-conf done 0.01s warnings=1
 *   node-bootstrap: phase=kubelet skipped
 *   node-bootstrap: phase=sandbox-image FAILED code=PULL_UNAUTHORIZED 3.20s hint="…" error="…"
 *   node-bootstrap: OK 6/6 phases in 4.21s
 *   node-bootstrap: FAILED phase=sandbox-image code=PULL_UNAUTHORIZED retryable=false hint="…"
 *
 * Every line starts with `node-bootstrap: `; free text is JSON-quoted on one line and comes last.
 */

export const SUMMARY_PREFIX = 'node-bootstrap: ';

/** The shape of a phase record these lines need (runner/status.ts PhaseRecord satisfies it). */
export interface SummaryPhase {
  name: string;
  result: 'ok' | 'failed' | 'skipped' | 'not-run';
  durationMs?: number;
  warnings: readonly string[];
  error?: { code: string; message: string; retryable: boolean; hint: string };
}

/** Longest free text kept on a line (error messages can carry a whole gRPC detail). */
const MAX_TEXT = 400;

/** One line, JSON-quoted, bounded: safe to grep and to split on spaces before it. */
export function quote(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return JSON.stringify(flat.length > MAX_TEXT ? `${flat.slice(0, MAX_TEXT - 1)}…` : flat);
}

export const seconds = (ms: number): string => `${(Math.max(0, ms) / 1000).toFixed(2)}s`;

/** The line for a phase that ended (ok, failed or skipped); undefined for one that did not run. */
export function phaseLine(p: SummaryPhase): string | undefined {
  const head = `${SUMMARY_PREFIX}phase=${p.name}`;
  const warnings = p.warnings.length > 0 ? ` warnings=${p.warnings.length}` : '';
  switch (p.result) {
    case 'ok':
      return `${head} done ${seconds(p.durationMs ?? 0)}${warnings}`;
    case 'skipped':
      return `${head} skipped`;
    case 'failed': {
      const e = p.error;
      const code = e?.code ?? 'INTERNAL';
      const tail = e ? ` hint=${quote(e.hint)} error=${quote(e.message)}` : '';
      return `${head} FAILED code=${code} ${seconds(p.durationMs ?? 0)}${warnings}${tail}`;
    }
    default:
      return undefined;
  }
}

export interface SummaryRun {
  command: string;
  phases: readonly SummaryPhase[];
  durationMs: number;
  /** The run's error (also when no phase failed: a shutdown before the first phase). */
  error?: { code: string; retryable: boolean; hint: string };
}

/** The verdict: the last `node-bootstrap: ` line of a run. */
export function verdictLine(r: SummaryRun): string {
  const extra = r.command === 'run' ? '' : ` command=${r.command}`;
  if (r.error) {
    const phase = r.phases.find((p) => p.result === 'failed')?.name ?? 'none';
    return `${SUMMARY_PREFIX}FAILED phase=${phase} code=${r.error.code} retryable=${r.error.retryable}${extra} hint=${quote(r.error.hint)}`;
  }
  const ok = r.phases.filter((p) => p.result === 'ok').length;
  const skipped = r.phases.filter((p) => p.result === 'skipped').map((p) => p.name);
  const warnings = r.phases.reduce((n, p) => n + p.warnings.length, 0);
  return [
    `${SUMMARY_PREFIX}OK ${ok}/${r.phases.length} phases in ${seconds(r.durationMs)}`,
    warnings > 0 ? ` warnings=${warnings}` : '',
    skipped.length > 0 ? ` skipped=${skipped.join(',')}` : '',
    extra,
  ].join('');
}
