/**
 * Where the timeline goes besides <state-dir> (a tmpfs, gone at reboot): a copy in the log
 * directory for the EKS log collector and people reading /var/log, and node_exporter textfile
 * metrics. Both are refreshed when the run starts, after every phase and at the end, so a run
 * killed mid-way still leaves how far it got. Neither can fail the run: a missing directory means nobody reads there (nothing
 * is written); a write error is logged once and that output is dropped for the rest of the run.
 */
import { readFileSync } from 'node:fs';
import { pruneFiles, publishFile } from '../adapters/public-file.js';
import {
  type MetricsPrefetch,
  metricsFile,
  PREFETCH_METRICS_FILE,
  prefetchFamilies,
  renderMetrics,
  runFamilies,
} from '../core/metrics.js';
import type { Logger } from '../log.js';
import { type RunStatus, STATUS_FILE } from './status.js';

export interface OutputSettings {
  /** report.logDir; false: no copy. */
  logDir: string | false;
  /** report.history: per-boot copies kept (status-<boot id>.json), 0: none. */
  history: number;
  /** metrics.textfileDir; false: no metrics. */
  textfileDir: string | false;
}

/** This boot's id (the journal's _BOOT_ID, dashes included), or undefined where there is none. */
export function readBootId(file = '/proc/sys/kernel/random/boot_id'): string | undefined {
  try {
    const id = readFileSync(file, 'utf8').trim();
    return /^[0-9a-f-]{32,36}$/.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

const PER_BOOT = /^status-[0-9a-f-]{32,36}\.json$/;

/** One output that turns itself off after its directory was missing or a write failed. */
function output(
  what: string,
  dir: string | false,
  log: Logger,
  write: (dir: string) => 'written' | 'no-directory',
) {
  let on = dir !== false;
  return (): void => {
    if (!on || dir === false) return;
    try {
      if (write(dir) === 'no-directory') {
        on = false;
        log.debug(`${what}: ${dir} does not exist; not written`);
      }
    } catch (err) {
      on = false;
      const e = err as NodeJS.ErrnoException;
      log.warn({ result: 'warning' }, `${what}: cannot write in ${dir}: ${e.code ?? e.message}`);
    }
  };
}

/** The runner's onSave: copy the timeline to the log directory and render its metrics. */
export function timelineOutputs(
  s: OutputSettings,
  o: { statusFile?: string; bootId?: string; log: Logger; now?: () => Date },
): (status: RunStatus) => void {
  const statusFile = o.statusFile ?? STATUS_FILE;
  const now = o.now ?? (() => new Date());
  let current: RunStatus | undefined;
  let pruned = false;
  const copy = output('status copy', s.logDir, o.log, (dir) => {
    const text = `${JSON.stringify(current, null, 2)}\n`;
    // The per-boot copy first: status.json is then never newer than the history it summarises.
    if (statusFile === STATUS_FILE && o.bootId && s.history > 0) {
      if (publishFile(dir, `status-${o.bootId}.json`, text) === 'no-directory') return 'no-directory';
      if (!pruned) {
        pruneFiles(dir, PER_BOOT, s.history);
        pruned = true;
      }
    }
    return publishFile(dir, statusFile, text);
  });
  const metrics = output('textfile metrics', s.textfileDir, o.log, (dir) =>
    publishFile(dir, metricsFile(current!.command), renderMetrics(runFamilies(current!, now()))),
  );
  // A phase starting changes nothing a reader of these files acts on: write when a phase ended or
  // the run's result changed (about 8 writes of each file per boot instead of 14).
  let last = '';
  return (status) => {
    const key = `${status.result}:${status.phases.map((p) => p.result).join(',')}`;
    if (key === last) return;
    last = key;
    current = status;
    copy();
    metrics();
  };
}

/** prefetch's counters, in their own file next to the run's. */
export function publishPrefetchMetrics(dir: string | false, t: MetricsPrefetch, log: Logger): void {
  output('textfile metrics', dir, log, (d) =>
    publishFile(d, PREFETCH_METRICS_FILE, renderMetrics(prefetchFamilies(t, new Date()))),
  )();
}
