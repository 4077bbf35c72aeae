/**
 * Phase resolv-conf: find the resolv.conf kubelet will hand to pods (its flags, config file and
 * drop-ins, or kubelet.resolvConf), and stop kubelet from starting when that file would break DNS for
 * pods: missing, empty (containerd 1.7.20+ no longer falls back to the host's file), no nameserver,
 * only loopback nameservers (systemd-resolved's stub), unusable lines. What kubelet silently trims
 * (nameservers over 3, search limits, ignored options) is a warning.
 *
 * kubelet.resolvConfPolicy: `fail` (default) stops here; `warn` lets kubelet start with warnings;
 * `repair` writes a corrected copy to <state-dir>/resolv.conf and points kubelet at it with
 * `--resolv-conf` appended to a variable kubelet's ExecStart expands, set in
 * <state-dir>/kubelet-resolv.env. kubelet reads that file if one of its drop-ins names it
 * (EnvironmentFile=-…, no reload needed); otherwise this phase adds the drop-in
 * /run/systemd/system/kubelet.service.d/20-node-bootstrap-resolv.conf and reloads systemd (D-Bus
 * Reload). The operator's file is never edited.
 */
import { join } from 'node:path';
import type { ResolvConfPolicy } from '../config.js';
import type { FileContent, FileReader } from '../core/file-reader.js';
import { discoverKubelet, REPAIR_DROP_IN } from '../core/kubelet-settings.js';
import {
  hasErrors,
  type Problem,
  parseResolvConf,
  RESOLVED_UPSTREAM_FILE,
  type RepairSource,
  repairResolvConf,
  resolvConfProblems,
} from '../core/resolv-conf.js';
import { listSetting, loadUnit, unitEnvironment } from '../core/unit-files.js';
import { BootError } from '../errors.js';
import type { Phase, PhaseContext } from '../runner/phase.js';
import { retrying } from '../runner/retry.js';
import type { RuntimeFacts } from './cri.js';

export interface ResolvConfDeps {
  /** The node's files (root /). */
  files: FileReader;
  /** Atomic replace (repair only). */
  write(path: string, text: string, mode?: number): void;
  /** Remove a file; true when it existed. */
  remove(path: string): boolean;
  /** systemd daemon-reload over D-Bus, so kubelet's unit picks up a drop-in. */
  reload(signal: AbortSignal): Promise<void>;
}

export interface ResolvConfSettings {
  /** kubelet.resolvConf */
  resolvConf?: string;
  /** kubelet.config */
  config?: string;
  /** kubelet.unit */
  unit: string;
  /** kubelet.resolvConfPolicy */
  resolvConfPolicy: ResolvConfPolicy;
  /** Where repair writes resolv.conf and kubelet-resolv.env (the state dir, /run/node-bootstrap). */
  stateDir: string;
  /** Runtime unit directory for the repair drop-in (default /run/systemd/system). */
  dropInRoot?: string;
}

export const REPAIRED_FILE = 'resolv.conf';
export const REPAIR_ENV_FILE = 'kubelet-resolv.env';

/** A reader that does not see node-bootstrap's own repair outputs: decisions are about the operator's files. */
const withoutOwn = (files: FileReader, own: readonly string[]): FileReader => ({
  read: (p) => (own.includes(p) ? { ok: false, code: 'ENOENT' } : files.read(p)),
  list: (d) => files.list(d),
  exists: (p) => !own.includes(p) && files.exists(p),
});

/** One value for an EnvironmentFile= line: double-quoted, with systemd's escapes. */
const envQuote = (v: string): string => `"${v.replace(/(["\\`$])/g, '\\$1')}"`;

export function resolvConf(
  deps: ResolvConfDeps,
  s: ResolvConfSettings,
  runtime: RuntimeFacts,
  timeoutMs: number,
  observe = false,
): Phase {
  const repairedFile = join(s.stateDir, REPAIRED_FILE);
  const envFile = join(s.stateDir, REPAIR_ENV_FILE);
  const dropIn = join(s.dropInRoot ?? '/run/systemd/system', `${s.unit}.d`, REPAIR_DROP_IN);
  return {
    name: 'resolv-conf',
    timeoutMs,
    async run(ctx) {
      const files = withoutOwn(deps.files, [envFile]);
      const kubelet = discoverKubelet(files, {
        resolvConf: s.resolvConf,
        kubeletConfig: s.config,
        unit: s.unit,
      });
      const choice = kubelet.resolvConf;
      for (const note of kubelet.notes) ctx.log.debug({ note }, `kubelet discovery: ${note}`);
      ctx.record({ resolvConf: choice.value, resolvConfSource: choice.source.where });

      // A file under /run may be written a moment from now (systemd-resolved, nodeadm): wait for it,
      // for half the phase's deadline at most (a repair needs the rest).
      const content =
        choice.value === '' ? undefined : await waitForFile(ctx, files, choice.value, timeoutMs / 2);
      const problems = resolvConfProblems({
        choice,
        content,
        containerd: runtime.caps,
        clusterDomain: kubelet.clusterDomain?.value !== '',
      });
      for (const p of problems.filter((x) => x.severity === 'warning')) ctx.warn(p.message);
      const errors = problems.filter((p) => p.severity === 'error');
      if (content?.ok) {
        const ns = parseResolvConf(content.text).nameservers.map((n) => n.address);
        ctx.record({ resolvConfNameservers: ns.join(' ') });
      }

      if (!hasErrors(problems)) {
        if (observe) {
          if (deps.files.exists(envFile)) ctx.record({ wouldRemoveRepair: envFile });
          return;
        }
        await undoRepair(ctx);
        return;
      }
      if (s.resolvConfPolicy === 'fail') throw toError(errors);
      if (s.resolvConfPolicy === 'repair' && observe) {
        const e = toError(errors);
        throw new BootError(
          e.code,
          `${e.message} (observe: would write a corrected copy to ${repairedFile})`,
          {
            hint: e.hint,
          },
        );
      }
      if (s.resolvConfPolicy === 'warn') {
        for (const e of errors) ctx.warn(`${e.message} (resolvConfPolicy: warn, kubelet starts anyway)`);
        ctx.record({ resolvConfPolicy: 'warn' });
        return;
      }
      await repair(ctx, errors, content);

      async function repair(ctx: PhaseContext, errors: Problem[], content: FileContent | undefined) {
        const parse = (path: string): RepairSource => {
          const c = files.read(path);
          return { path, ...(c.ok ? { parsed: parseResolvConf(c.text) } : {}) };
        };
        const original: RepairSource = {
          path: choice.value,
          ...(content?.ok ? { parsed: parseResolvConf(content.text) } : {}),
        };
        const fixed = repairResolvConf(original, [parse('/etc/resolv.conf'), parse(RESOLVED_UPSTREAM_FILE)], {
          clusterDomain: kubelet.clusterDomain?.value !== '',
          header: `Written by node-bootstrap (kubelet.resolvConfPolicy: repair) at ${new Date().toISOString()}.\nkubelet's resolv.conf ${choice.value || '(none)'} (${choice.source.where}) would break pods:\n${errors.map((e) => e.id).join(', ')}. That file was left as it is; kubelet uses this copy.`,
        });
        const e = toError(errors);
        if (!fixed)
          throw new BootError(
            e.code,
            `${e.message}; cannot repair it: no usable nameserver in ${choice.value || '(none)'}, /etc/resolv.conf or ${RESOLVED_UPSTREAM_FILE}`,
            { hint: e.hint },
          );
        deps.write(repairedFile, fixed.text, 0o644);

        // kubelet's flags end with what a variable of its ExecStart holds: append --resolv-conf there.
        const unit = loadUnit(files, s.unit, { ignoreDropIns: [REPAIR_DROP_IN] });
        const variable = kubelet.execVars.includes('KUBELET_EXTRA_ARGS')
          ? 'KUBELET_EXTRA_ARGS'
          : kubelet.execVars.at(-1);
        if (!kubelet.unitFile || !variable)
          throw new BootError(
            e.code,
            `${e.message}; node-bootstrap wrote a corrected copy to ${repairedFile} but cannot point kubelet at it: ${kubelet.unitFile ? `the ExecStart= of ${kubelet.unitFile} expands no variable` : `${s.unit} was not found`}`,
            { hint: `add --resolv-conf=${repairedFile} to kubelet's flags, or ${e.hint}` },
          );
        const current = unitEnvironment(files, unit).vars.get(variable)?.value ?? '';
        const flag = `--resolv-conf=${repairedFile}`;
        deps.write(
          envFile,
          `# Written by node-bootstrap (resolvConfPolicy: repair): kubelet's flags plus ${flag}.\n${variable}=${envQuote(`${current} ${flag}`.trim())}\n`,
          0o644,
        );
        const named = listSetting(unit, 'Service', 'EnvironmentFile').some(
          (d) => d.value.replace(/^-/, '') === envFile,
        );
        let how: string;
        if (named) how = `${envFile}, which kubelet's unit already reads`;
        else {
          try {
            deps.write(
              dropIn,
              `# Written by node-bootstrap (resolvConfPolicy: repair): kubelet uses ${repairedFile}.\n[Service]\nEnvironmentFile=-${envFile}\n`,
              0o644,
            );
          } catch (err) {
            throw new BootError(
              e.code,
              `${e.message}; node-bootstrap wrote a corrected copy to ${repairedFile} but cannot add the drop-in ${dropIn} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}: node-bootstrap.service's ProtectSystem=strict keeps /run/systemd read-only)`,
              {
                hint: `add "EnvironmentFile=-${envFile}" under [Service] in kubelet.service.d/10-node-bootstrap.conf, so repair needs no drop-in; or ${e.hint}`,
              },
            );
          }
          ctx.status('systemd daemon-reload (kubelet drop-in)');
          await retrying(ctx.signal, async () => {
            try {
              await deps.reload(ctx.signal);
            } catch (err) {
              if (ctx.signal.aborted) throw err;
              throw new BootError(
                'DBUS_UNAVAILABLE',
                `wrote ${dropIn}, but systemd did not reload (${(err as Error).message}): kubelet would still use ${choice.value}`,
              );
            }
          });
          how = `the drop-in ${dropIn} (systemd reloaded)`;
        }
        ctx.record({
          resolvConfPolicy: 'repair',
          resolvConfRepaired: repairedFile,
          resolvConfNameservers: fixed.nameservers.join(' '),
        });
        ctx.warn(
          `repaired: ${errors.map((x) => x.message).join('; ')}. kubelet now uses ${repairedFile} (${fixed.changes.join(', ') || 'rewritten'}) through $${variable} in ${how}; fix the original: ${e.hint}`,
        );
      }

      /** A later run with a usable file takes node-bootstrap's repair back out. */
      async function undoRepair(ctx: PhaseContext) {
        const hadEnv = deps.remove(envFile);
        deps.remove(repairedFile);
        if (deps.remove(dropIn)) await deps.reload(ctx.signal);
        if (hadEnv) ctx.log.info({ envFile }, 'resolv.conf is usable again: removed the earlier repair');
      }
    },
  };
}

/** The file's content, waiting up to waitMs while it does not exist; then whatever reading it gives. */
async function waitForFile(
  ctx: PhaseContext,
  files: FileReader,
  path: string,
  waitMs: number,
): Promise<FileContent> {
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(waitMs)]);
  try {
    return await retrying(
      signal,
      async () => {
        const c = files.read(path);
        if (!c.ok && (c.code === 'ENOENT' || c.code === 'ENOTDIR'))
          throw new BootError('RESOLV_CONF_MISSING', `${path} does not exist (yet)`, { retryable: true });
        return c;
      },
      {
        minDelayMs: 50,
        maxDelayMs: 500,
        onRetry: (_e, n) => ctx.status(`waiting for ${path} to appear (attempt ${n})`),
      },
    );
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    return files.read(path);
  }
}

function toError(errors: Problem[]): BootError {
  const missing = errors.some((e) => e.id === 'missing' || e.id === 'unreadable');
  return new BootError(
    missing ? 'RESOLV_CONF_MISSING' : 'RESOLV_CONF_INVALID',
    errors.map((e) => e.message).join('; '),
    { hint: errors[0]!.fix },
  );
}
