/**
 * The phase runner: one place that gives every phase a deadline, an AbortSignal, uniform logs
 * (started / done with duration / failed with code), a live status line and a timeline in status.json.
 */
import { phaseLine } from '../core/summary.js';
import { BootError, toBootError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Phase, PhaseContext, PhaseName } from './phase.js';
import { type PhaseRecord, type RunStatus, writeStatus } from './status.js';

export interface RunnerOptions {
  command: string;
  version: string;
  log: Logger;
  /** SIGTERM/SIGINT: aborts the running phase; no later phase starts. */
  signal: AbortSignal;
  skip?: ReadonlySet<PhaseName>;
  stateDir?: string;
  /** File name of the timeline under stateDir (default status.json; guard keeps its own). */
  statusFile?: string;
  configSources?: string[];
  /** What loaded this process's code (status.json `startup`); the same array as it grows. */
  startup?: RunStatus['startup'];
  /** Live status line (sd_notify STATUS=). */
  notify?: (status: string) => void;
  /** One self-contained line per phase that ended (core/summary.ts), for stdout and the console. */
  summary?: (line: string) => void;
  /** Called with the timeline after every save (copies for the log collector, metrics). */
  onSave?: (status: RunStatus) => void;
  /** Deadline of the whole run (timeouts.run): each phase's deadline is cut to what is left of it. */
  runTimeoutMs?: number;
  /** Run every phase even after one failed (`run --observe`: report everything found); the first failure is the verdict. */
  keepGoing?: boolean;
}

const abortedBy = (signal: AbortSignal): string =>
  signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? 'signal');

/** Maps whatever a phase threw to a BootError, telling deadline and shutdown apart. */
function classify(
  err: unknown,
  phase: Phase,
  run: AbortSignal,
  deadline: AbortSignal,
  runTimeoutMs?: number,
): BootError {
  if (err instanceof BootError && err.code !== 'INTERNAL') return err;
  if (run.aborted) return new BootError('ABORTED', `phase ${phase.name} stopped: ${abortedBy(run)}`);
  if (deadline.aborted && runTimeoutMs !== undefined) return runTimeout(phase, runTimeoutMs);
  if (deadline.aborted)
    return new BootError(
      'PHASE_TIMEOUT',
      `phase ${phase.name} did not finish within ${phase.timeoutMs / 1000}s`,
      {
        hint: `raise timeouts.${phase.name} in config.yaml, or fix what it waits for`,
      },
    );
  return toBootError(err);
}

const runTimeout = (phase: Phase, runTimeoutMs: number): BootError =>
  new BootError(
    'RUN_TIMEOUT',
    `phase ${phase.name} stopped at the run's deadline (timeouts.run: ${runTimeoutMs / 1000}s for all phases)`,
  );

export interface RunOutcome {
  status: RunStatus;
  /** The first failure; later phases did not run. */
  error?: BootError;
}

export async function runPhases(phases: readonly Phase[], opts: RunnerOptions): Promise<RunOutcome> {
  const status: RunStatus = {
    schema: 1,
    version: opts.version,
    command: opts.command,
    pid: process.pid,
    startedAt: new Date().toISOString(),
    result: 'running',
    configSources: opts.configSources ?? [],
    ...(opts.startup?.length ? { startup: opts.startup } : {}),
    phases: phases.map((p) => ({ name: p.name, result: 'not-run', warnings: [], facts: {} })),
  };
  const save = (): void => {
    if (opts.stateDir) writeStatus(opts.stateDir, status, opts.statusFile);
    try {
      opts.onSave?.(status);
    } catch (err) {
      // Copies and metrics are for observers: never a reason for the run itself to fail.
      opts.log.warn({ err: String(err) }, `saving the timeline's copies failed: ${String(err)}`);
    }
  };
  const notify = opts.notify ?? (() => {});
  const summarize = (rec: PhaseRecord): void => {
    const line = phaseLine(rec);
    if (line) opts.summary?.(line);
  };
  save();

  let failed: BootError | undefined;
  const runEnds = opts.runTimeoutMs === undefined ? Infinity : performance.now() + opts.runTimeoutMs;
  for (const [i, phase] of phases.entries()) {
    const rec = status.phases[i] as PhaseRecord;
    const progress = `[${i + 1}/${phases.length}]`;
    const log = opts.log.child({ phase: phase.name });
    if (opts.skip?.has(phase.name)) {
      rec.result = 'skipped';
      log.info({ result: 'skipped' }, `${progress} ${phase.name}: skipped (--skip)`);
      summarize(rec);
      continue;
    }
    if (opts.signal.aborted) break;

    // The phase's own deadline, or what is left of the run's when that comes first.
    const left = Math.max(0, Math.floor(runEnds - performance.now()));
    const cutByRun = left < phase.timeoutMs;
    const deadline = AbortSignal.timeout(cutByRun ? left : phase.timeoutMs);
    const signal = AbortSignal.any([opts.signal, deadline]);
    const started = performance.now();
    rec.startedAt = new Date().toISOString();
    log.info({ result: 'started' }, `${progress} ${phase.name}: started`);
    notify(`${progress} ${phase.name}`);
    save();

    const ctx: PhaseContext = {
      signal,
      log,
      status: (text) => notify(`${progress} ${phase.name}: ${text}`),
      warn: (message) => {
        rec.warnings.push(message);
        log.warn({ result: 'warning' }, `${phase.name}: ${message}`);
      },
      record: (facts) => Object.assign(rec.facts, facts),
    };
    try {
      if (cutByRun && left === 0) throw runTimeout(phase, opts.runTimeoutMs!);
      await phase.run(ctx);
      rec.durationMs = Math.round(performance.now() - started);
      rec.result = 'ok';
      log.info(
        { result: 'ok', durationMs: rec.durationMs },
        `${progress} ${phase.name}: done in ${rec.durationMs} ms`,
      );
      summarize(rec);
    } catch (err) {
      const e = classify(err, phase, opts.signal, deadline, cutByRun ? opts.runTimeoutMs : undefined);
      failed ??= e;
      rec.durationMs = Math.round(performance.now() - started);
      rec.result = 'failed';
      rec.error = e.toJSON();
      log.error(
        {
          result: 'failed',
          durationMs: rec.durationMs,
          code: e.code,
          retryable: e.retryable,
          hint: e.hint,
        },
        `${progress} ${phase.name}: failed (${e.code}): ${e.message}`,
      );
      summarize(rec);
      notify(`${progress} ${phase.name} failed: ${e.code}`);
      save();
      if (!opts.keepGoing || opts.signal.aborted) break;
      continue;
    }
    save();
  }

  if (!failed && opts.signal.aborted)
    failed = new BootError('ABORTED', `run stopped: ${abortedBy(opts.signal)}`);
  status.finishedAt = new Date().toISOString();
  status.result = failed ? 'failed' : 'ok';
  status.exitCode = failed ? failed.exitCode : 0;
  save();
  notify(failed ? `failed: ${failed.code}: ${failed.message}` : 'done: all gates passed');
  return { status, error: failed };
}
