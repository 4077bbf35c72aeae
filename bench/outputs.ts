/**
 * What the operator outputs cost a boot run: the runner's saves of a six-phase run with the status
 * copy (two files) and the textfile metrics written, against the same saves to the state directory
 * only. In process, on a real disk directory (/var/tmp), interleaved round by round.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../src/log.js';
import { timelineOutputs } from '../src/runner/outputs.js';
import { PHASE_NAMES } from '../src/runner/phase.js';
import { type RunStatus, writeStatus } from '../src/runner/status.js';
import { median, quantile, table } from './lib.js';

/** The saves of one run as the runner makes them: start, each phase started and ended, the end. */
function saves(): RunStatus[] {
  const st: RunStatus = {
    schema: 1,
    version: '0.1.0',
    command: 'run',
    pid: 1,
    startedAt: new Date().toISOString(),
    result: 'running',
    configSources: ['/etc/node-bootstrap/config.yaml'],
    phases: PHASE_NAMES.map((name) => ({ name, result: 'not-run', warnings: [], facts: {} })),
  };
  const out: RunStatus[] = [structuredClone(st)];
  for (const p of st.phases) {
    p.startedAt = new Date().toISOString();
    out.push(structuredClone(st));
    p.result = 'ok';
    p.durationMs = 120;
    p.facts = {
      containerdVersion: '1.7.24~ds1',
      image: '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10',
    };
    out.push(structuredClone(st));
  }
  st.result = 'ok';
  st.exitCode = 0;
  st.finishedAt = new Date().toISOString();
  out.push(structuredClone(st));
  return out;
}

export function outputsBench(rounds = 200): string {
  const base = mkdtempSync('/var/tmp/nb-bench-outputs-');
  const log = createLogger({ level: 'silent' });
  const run = saves();
  const times: Record<'state only' | 'state + copy + metrics', number[]> = {
    'state only': [],
    'state + copy + metrics': [],
  };
  try {
    for (let i = 0; i < rounds + 10; i++) {
      for (const mode of Object.keys(times) as (keyof typeof times)[]) {
        const dir = join(base, `${mode === 'state only' ? 's' : 'o'}${i}`);
        const logDir = join(dir, 'log');
        const textfileDir = join(dir, 'textfile');
        mkdirSync(logDir, { recursive: true });
        mkdirSync(textfileDir, { recursive: true });
        const onSave =
          mode === 'state only'
            ? undefined
            : timelineOutputs(
                { logDir, history: 5, textfileDir },
                { bootId: '95c2cf57-552e-42b9-86dd-04ef302d5969', log },
              );
        const t0 = performance.now();
        for (const st of run) {
          writeStatus(join(dir, 'state'), st);
          onSave?.(st);
        }
        if (i >= 10) times[mode].push(performance.now() - t0);
      }
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
  const rows = Object.entries(times).map(([k, xs]) => [
    k,
    median(xs).toFixed(2),
    quantile(xs, 0.9).toFixed(2),
  ]);
  const extra = median(times['state + copy + metrics']) - median(times['state only']);
  return `${table(['saves of one 6-phase run (14)', 'median ms', 'p90 ms'], rows)}\nthe outputs add ${extra.toFixed(2)} ms to a run (${rounds} rounds, /var/tmp)`;
}
