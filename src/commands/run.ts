/** `run`: load the config, build the adapters, run the boot sequence, print one verdict line. */
import { bootSequence } from '../boot.js';
import { DEFAULT_STATE_DIR, loadConfig } from '../config.js';
import { BootError, EXIT } from '../errors.js';
import { createLogger } from '../log.js';
import { isPhaseName, PHASE_NAMES, type PhaseName } from '../runner/phase.js';
import { runPhases } from '../runner/runner.js';
import { VERSION } from '../version.js';

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

export async function run(
  v: Record<string, string | boolean | undefined>,
  signal: AbortSignal,
): Promise<number> {
  // Everything that can be wrong with the input is found before anything on the node is touched.
  const skip = parseSkip(v.skip as string | undefined);
  const cfg = loadConfig({ file: v.config as string | undefined });
  const stateDir = (v['state-dir'] as string | undefined) ?? DEFAULT_STATE_DIR;
  const log = createLogger();

  const [{ createCriClient }, { createContainerdClient }] = await Promise.all([
    import('../adapters/cri.js'),
    import('../adapters/containerd.js'),
  ]);
  const adapters = {
    cri: createCriClient(cfg.containerd.socket),
    containerd: createContainerdClient(cfg.containerd.socket),
  };
  try {
    const { status, error } = await runPhases(bootSequence(cfg, adapters), {
      command: 'run',
      version: VERSION,
      log,
      signal,
      skip,
      stateDir,
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
    const warnings = status.phases.reduce((n, p) => n + p.warnings.length, 0);
    process.stdout.write(
      `node-bootstrap: OK in ${took} ms (${warnings} warning(s)); timeline in ${stateDir}/status.json\n`,
    );
    return EXIT.ok;
  } finally {
    adapters.cri.close();
    adapters.containerd.close();
  }
}
