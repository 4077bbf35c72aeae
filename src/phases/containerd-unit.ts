/**
 * Phase containerd-unit: wait until containerd.service is active, reacting to D-Bus
 * PropertiesChanged (no sleeps); fail fast when it failed, is masked or is not installed.
 */
import type { Systemd } from '../adapters/systemd.js';
import { type UnitVerdict, unitVerdict } from '../core/unit-state.js';
import { BootError } from '../errors.js';
import { isDeadline, type Phase } from '../runner/phase.js';

export function containerdUnit(systemd: Systemd, unit: string, timeoutMs: number): Phase {
  return {
    name: 'containerd-unit',
    timeoutMs,
    async run(ctx) {
      const started = performance.now();
      let last: UnitVerdict = { kind: 'waiting', why: `${unit}: no state read yet` };
      let startRequested = false;
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
    },
  };
}
