/** `run` and `guard`: load the config, build the adapters, run a sequence, print one verdict line. */
import { type BootAdapters, bootSequence, guardSequence } from '../boot.js';
import { type Config, DEFAULT_STATE_DIR, loadConfig } from '../config.js';
import { BootError, EXIT } from '../errors.js';
import { createLogger } from '../log.js';
import { isPhaseName, PHASE_NAMES, type Phase, type PhaseName } from '../runner/phase.js';
import { runPhases } from '../runner/runner.js';
import { VERSION } from '../version.js';
import { createAdapters } from './adapters.js';

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

async function sequence(
  command: 'run' | 'guard',
  build: (cfg: Config, a: BootAdapters) => Phase[],
  v: Values,
  signal: AbortSignal,
): Promise<number> {
  // Everything that can be wrong with the input is found before anything on the node is touched.
  const skip = parseSkip(v.skip as string | undefined);
  const cfg = loadConfig({ file: v.config as string | undefined });
  const stateDir = (v['state-dir'] as string | undefined) ?? DEFAULT_STATE_DIR;
  const log = createLogger();
  // Process warnings (e.g. the AWS SDK's Node 20 notice) as one structured line, not a stderr paragraph.
  process.removeAllListeners('warning');
  process.on('warning', (w) => log.warn({ warning: w.name }, w.message.replace(/\s+/g, ' ').trim()));
  const adapters = await createAdapters(cfg, stateDir);
  try {
    const { status, error } = await runPhases(build(cfg, adapters), {
      command,
      version: VERSION,
      log,
      signal,
      skip,
      stateDir,
      statusFile: command === 'run' ? 'status.json' : 'guard.json',
      configSources: cfg.sources,
    });
    const took = Date.parse(status.finishedAt ?? status.startedAt) - Date.parse(status.startedAt);
    if (error) {
      const phase = status.phases.find((p) => p.result === 'failed')?.name ?? 'none';
      process.stdout.write(
        `node-bootstrap: FAILED phase=${phase} code=${error.code} retryable=${error.retryable} hint=${JSON.stringify(error.hint)}\n`,
      );
      return error.exitCode;
    }
    const warnings = status.phases.flatMap((p) => p.warnings);
    process.stdout.write(`node-bootstrap: OK ${command} in ${took} ms, ${warnings.length} warning(s)\n`);
    return EXIT.ok;
  } finally {
    adapters.close();
  }
}

export const run = (v: Values, signal: AbortSignal): Promise<number> =>
  sequence('run', bootSequence, v, signal);
export const guard = (v: Values, signal: AbortSignal): Promise<number> =>
  sequence('guard', guardSequence, v, signal);
