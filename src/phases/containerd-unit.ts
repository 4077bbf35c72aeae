/**
 * Phase containerd-unit: wait until containerd.service is active, reacting to D-Bus
 * PropertiesChanged (no sleeps); fail fast when it failed, is masked or is not installed, or when
 * it keeps failing while systemd restarts it. Then, when containerd's rendered config (config.toml
 * and its imports) changed after the running containerd started, restart it: the phases after this
 * one wait for its socket and CRI again.
 */
import { type UnitVerdict, unitVerdict } from '../core/unit-state.js';
import { BootError } from '../errors.js';
import { isDeadline, type Phase } from '../runner/phase.js';
import { type ApplyConfigDeps, applyRenderedConfig } from './apply-config.js';

export interface ContainerdUnitDeps extends ApplyConfigDeps {
  /** containerd's rendered config files (config.toml and its imports; throws when they do not parse). */
  configFiles: () => string[];
}

/**
 * containerd.service as Debian and upstream ship it has Restart=always, RestartSec=5: a containerd
 * that cannot start (broken config.toml, missing binary) never reaches `failed`, it sits in
 * `activating (auto-restart)` between attempts, forever. One failed start is waited out (it may be
 * a transient at boot, and systemd retries it); this many failed starts are a verdict.
 */
export const CRASH_LOOP_FAILURES = 2;

export function containerdUnit(
  deps: ContainerdUnitDeps,
  unit: string,
  timeoutMs: number,
  observe = false,
): Phase {
  const { systemd } = deps;
  return {
    name: 'containerd-unit',
    timeoutMs,
    async run(ctx) {
      const started = performance.now();
      let last: UnitVerdict = { kind: 'waiting', why: `${unit}: no state read yet` };
      let startRequested = false;
      const failedStarts = new Set<number>();
      let stop: (() => void) | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          const onAbort = (): void => reject(ctx.signal.reason);
          ctx.signal.addEventListener('abort', onAbort, { once: true });
          const done = (err?: BootError): void => {
            ctx.signal.removeEventListener('abort', onAbort);
            err ? reject(err) : resolve();
          };
          systemd
            .watch(unit, (state) => {
              last = unitVerdict(unit, state);
              ctx.record({ containerdUnitState: `${state.activeState}/${state.subState}` });
              if (last.kind === 'active') return done();
              if (last.kind === 'missing') return done(new BootError('CONTAINERD_UNIT_MISSING', last.why));
              if (last.kind === 'failed') return done(new BootError('CONTAINERD_UNIT_FAILED', last.why));
              if (state.subState === 'auto-restart' && state.result !== 'success') {
                // One failure per entry into auto-restart (its timestamp); NRestarts is a lower
                // bound for failures that happened before we watched (see ServiceState.restarts).
                failedStarts.add(state.since);
                const failures = Math.max(failedStarts.size, state.restarts);
                if (failures >= CRASH_LOOP_FAILURES)
                  return done(
                    new BootError(
                      'CONTAINERD_UNIT_FAILED',
                      `${unit} keeps failing: ${failures} failed starts (Result=${state.result}) while systemd restarts it`,
                      {
                        hint: `read \`journalctl -u ${unit} -b\` for why it exits, fix it, then re-run node-bootstrap`,
                      },
                    ),
                  );
                last = {
                  kind: 'waiting',
                  why: `${unit} failed (Result=${state.result}); systemd restarts it`,
                };
              }
              if (last.kind === 'start' && observe)
                return done(new BootError('UNIT_NOT_ACTIVE', `${last.why} (observe: would start ${unit})`));
              if (last.kind === 'start' && !startRequested) {
                startRequested = true;
                ctx.log.info({ unit }, `${last.why}: starting it`);
                systemd.start(unit, ctx.signal).catch(() => {});
              }
              ctx.status(
                `waiting for ${unit}: ${last.why} (${((performance.now() - started) / 1000).toFixed(0)}s)`,
              );
            })
            .then(
              (s) => {
                stop = s;
              },
              (err: unknown) =>
                done(
                  new BootError(
                    'DBUS_UNAVAILABLE',
                    `cannot watch ${unit} on the system bus: ${(err as Error).message}`,
                  ),
                ),
            );
        });
      } catch (err) {
        if (isDeadline(ctx.signal))
          throw new BootError('PHASE_TIMEOUT', `${unit} did not become active: ${last.why}`, {
            hint: `read \`journalctl -u ${unit} -b\`; raise timeouts.containerd-unit if it is only slow`,
          });
        throw err;
      } finally {
        stop?.();
      }
      ctx.record({ containerdUnitWaitMs: Math.round(performance.now() - started) });
      await applyRenderedConfig(ctx, deps, unit, deps.configFiles(), {
        observe,
        failCode: 'CONTAINERD_UNIT_FAILED',
      });
    },
  };
}
