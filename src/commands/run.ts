/**
 * `run` and `guard`: load the config, build the adapters, run a sequence; on stdout one line per
 * phase and one verdict line (core/summary.ts).
 */

import { createJournal } from '../adapters/journal.js';
import { createNotifier } from '../adapters/notify.js';
import { type BootAdapters, bootSequence, guardSequence, observeSequence } from '../boot.js';
import { type Config, DEFAULT_STATE_DIR, loadConfig } from '../config.js';
import { verdictLine } from '../core/summary.js';
import { BootError, EXIT } from '../errors.js';
import { createLogger, journalDestination } from '../log.js';
import { startupLoads } from '../payload.js';
import { readBootId, timelineOutputs } from '../runner/outputs.js';
import { isPhaseName, PHASE_NAMES, type Phase, type PhaseName } from '../runner/phase.js';
import { runPhases } from '../runner/runner.js';
import { VERSION } from '../version.js';
import { createAdapters, withRenderedSocket } from './adapters.js';
import { withNetworkWarnings } from './network.js';

type Values = Record<string, string | boolean | undefined>;

export function parseSkip(value: string | undefined): Set<PhaseName> {
  const names = (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names)
    if (!isPhaseName(n))
      throw new BootError('USAGE', `--skip: unknown phase \`${n}\``, {
        hint: `phases are: ${PHASE_NAMES.join(', ')}`,
      });
  return new Set(names as PhaseName[]);
}

/**
 * `run --observe` checks what is, it does not wait for what may come: each phase's deadline is at
 * most this (a node it observes has finished booting).
 */
export const OBSERVE_PHASE_MS = 30_000;

/** For a caller that runs a sequence for its own ends (commands/train.ts): no log, no console lines. */
export interface SequenceOptions {
  quiet?: boolean;
}

async function sequence(
  command: 'run' | 'guard' | 'observe',
  build: (cfg: Config, a: BootAdapters, stateDir: string) => Phase[],
  v: Values,
  signal: AbortSignal,
  opts: SequenceOptions = {},
): Promise<number> {
  const print = (line: string): void => {
    if (!opts.quiet) process.stdout.write(`${line}\n`);
  };
  // Everything that can be wrong with the input is found before anything on the node is touched.
  const skip = parseSkip(v.skip as string | undefined);
  const cfg = withRenderedSocket(loadConfig({ file: v.config as string | undefined }));
  const stateDir = (v['state-dir'] as string | undefined) ?? DEFAULT_STATE_DIR;
  // Under systemd (stdout goes to the journal) entries go to journald natively, with fields.
  const journal = cfg.env.journalStream ? createJournal() : undefined;
  // `command` on every entry (NODE_BOOTSTRAP_COMMAND): `report` tells a boot run from a guard run.
  const log = createLogger({
    ...(journal ? { destination: journalDestination(journal.send) } : {}),
    ...(opts.quiet ? { level: 'silent' } : {}),
  }).child({
    command,
  });
  const notifier = createNotifier(cfg.env.notifySocket);
  // Process warnings (e.g. the AWS SDK's Node 20 notice) as one structured line, not a stderr paragraph.
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    // The lazily compiled part uses vm's main-context loader, still flagged experimental on Node 20.
    const level = w.name === 'ExperimentalWarning' ? 'debug' : 'warn';
    log[level]({ warning: w.name }, w.message.replace(/\s+/g, ' ').trim());
  });
  const adapters = createAdapters(cfg, stateDir);
  // The boot reads the node's proxy settings (and NodeConfig) while containerd comes up, and says in
  // the sandbox-image phase what NO_PROXY misses; guard reads them only if it has to call AWS.
  const built = build(cfg, adapters, stateDir);
  const phases =
    command === 'observe'
      ? built.map((p) => ({ ...p, timeoutMs: Math.min(p.timeoutMs, OBSERVE_PHASE_MS) }))
      : built;
  const statusFile = command === 'guard' ? 'guard.json' : 'status.json';
  try {
    const { status, error } = await runPhases(
      command === 'guard' ? phases : withNetworkWarnings(phases, adapters.network()),
      {
        command,
        version: VERSION,
        log,
        signal,
        skip,
        stateDir,
        statusFile,
        // Every run has one deadline (timeouts.run) inside the 15 min node groups wait for a node.
        ...(command === 'guard' ? {} : { runTimeoutMs: cfg.runTimeoutMs }),
        // --observe reports every phase's findings, not only the first failure's.
        keepGoing: command === 'observe',
        configSources: cfg.sources,
        startup: startupLoads(),
        notify: notifier.status,
        // One line per phase on stdout: the console under systemd (StandardOutput=journal+console).
        summary: print,
        // A copy for the log collector (/var/log/node-bootstrap) and node_exporter textfile metrics.
        onSave: timelineOutputs(
          { ...cfg.report, textfileDir: cfg.metrics.textfileDir },
          { statusFile, bootId: readBootId(), log },
        ),
      },
    );
    const took = Date.parse(status.finishedAt ?? status.startedAt) - Date.parse(status.startedAt);
    // The run's verdict as one entry (no phase): what `report --source journal` ends a timeline with.
    const verdict = `node-bootstrap ${VERSION} ${command}: ${error ? `FAILED (${error.code})` : 'OK'} in ${took} ms`;
    if (error)
      log.error(
        {
          result: 'failed',
          durationMs: took,
          code: error.code,
          retryable: error.retryable,
          hint: error.hint,
        },
        verdict,
      );
    else log.info({ result: 'ok', durationMs: took }, verdict);
    print(verdictLine({ command, phases: status.phases, durationMs: took, error }));
    if (error) return error.exitCode;
    return EXIT.ok;
  } finally {
    adapters.close();
    await notifier.flush();
    await journal?.flush();
  }
}

export const run = (v: Values, signal: AbortSignal, opts?: SequenceOptions): Promise<number> =>
  v.observe
    ? sequence('observe', observeSequence, v, signal, opts)
    : sequence('run', bootSequence, v, signal, opts);
export const guard = (v: Values, signal: AbortSignal): Promise<number> =>
  sequence('guard', guardSequence, v, signal);
