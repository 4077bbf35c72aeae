/**
 * Shared by containerd-unit and kubelet: a running unit whose rendered config changed after it
 * started is restarted (D-Bus RestartUnit, followed to the end of its job); under --observe it is
 * only reported (CONFIG_NOT_APPLIED).
 */
import type { Systemd } from '../adapters/systemd.js';
import { type FileTime, restartVerdict } from '../core/restart.js';
import { BootError, type ErrorCode } from '../errors.js';
import type { PhaseContext } from '../runner/phase.js';

export interface ApplyConfigDeps {
  systemd: Systemd;
  /** A file's modification time (ms since the epoch), undefined when it does not exist. */
  mtime: (path: string) => number | undefined;
}

/** Restarts `unit` when one of `files` changed after it started; returns whether it did. */
export async function applyRenderedConfig(
  ctx: PhaseContext,
  deps: ApplyConfigDeps,
  unit: string,
  files: readonly string[],
  o: { observe: boolean; failCode: ErrorCode },
): Promise<boolean> {
  const times: FileTime[] = [];
  for (const path of files) {
    const mtimeMs = deps.mtime(path);
    if (mtimeMs !== undefined) times.push({ path, mtimeMs });
  }
  let startedAt: number | undefined;
  try {
    startedAt = await deps.systemd.startedAt(unit);
  } catch (err) {
    throw new BootError('DBUS_UNAVAILABLE', `cannot read when ${unit} started: ${(err as Error).message}`);
  }
  const v = restartVerdict(unit, startedAt, times);
  const key = unit.replace(/\.service$/, '').replace(/[^A-Za-z0-9]+(.)/g, (_m, c: string) => c.toUpperCase());
  ctx.record({ [`${key}ConfigCurrent`]: !v.restart });
  if (!v.restart) {
    ctx.log.debug({ unit }, v.why);
    return false;
  }
  if (o.observe)
    throw new BootError(
      'CONFIG_NOT_APPLIED',
      `${v.why}: ${unit} runs on the older config (observe: would restart ${unit})`,
      {
        hint: `restart ${unit} (\`systemctl restart ${unit}\`), or let \`node-bootstrap run\` do it`,
      },
    );
  ctx.log.info({ unit }, `restarting ${unit}: ${v.why}`);
  ctx.status(`restarting ${unit}: its config changed after it started`);
  let result: string;
  try {
    result = await deps.systemd.restart(unit, ctx.signal);
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    throw new BootError(
      o.failCode,
      `systemd refused to restart ${unit} to apply its config (${v.why}): ${(err as Error).message}`,
      {
        hint: `restart ${unit} by hand (\`systemctl restart ${unit}\`) and read \`journalctl -u ${unit} -b\``,
      },
    );
  }
  ctx.record({ [`${key}Restarted`]: true, [`${key}RestartReason`]: v.why });
  if (result !== 'done') {
    const s = await deps.systemd.state(unit);
    throw new BootError(
      o.failCode,
      `restarting ${unit} to apply its config (${v.why}) ended with job result ${result}, now ${s.activeState}/${s.subState} (Result=${s.result})`,
      { hint: `read \`journalctl -u ${unit} -b\`: the new config may be what it cannot start with` },
    );
  }
  return true;
}
