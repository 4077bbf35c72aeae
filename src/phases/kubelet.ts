/**
 * Phase kubelet: open the gate (the marker kubelet's drop-in requires), then start kubelet over
 * D-Bus and follow its job to the end; a kubelet already running is restarted only when its config
 * file, drop-ins or flags file changed after it started. kubelet is not ordered after node-bootstrap, so starting it
 * from inside our own start job cannot deadlock.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Systemd } from '../adapters/systemd.js';
import { BootError } from '../errors.js';
import type { Phase } from '../runner/phase.js';
import { type ApplyConfigDeps, applyRenderedConfig } from './apply-config.js';

export interface KubeletDeps extends ApplyConfigDeps {
  systemd: Systemd;
  /** kubelet's config file, its drop-ins and its flags' environment file (what a restart applies). */
  configFiles: () => string[];
  /** The last lines of a unit's journal, for the error message. */
  tail: (unit: string, lines: number, signal: AbortSignal) => Promise<string[]>;
}

export function kubelet(
  deps: KubeletDeps,
  unit: string,
  marker: string,
  timeoutMs: number,
  observe = false,
): Phase {
  return {
    name: 'kubelet',
    timeoutMs,
    async run(ctx) {
      const before = await deps.systemd.state(unit);
      const running = before.activeState === 'active' || before.activeState === 'reloading';
      ctx.record({ kubeletWasRunning: running });
      if (observe) {
        ctx.record({ kubeletState: `${before.activeState}/${before.subState}` });
        if (!running)
          throw new BootError(
            'UNIT_NOT_ACTIVE',
            `${unit} is ${before.activeState}/${before.subState} (observe: would open the gate ${marker} and start it)`,
          );
        await applyRenderedConfig(ctx, deps, unit, deps.configFiles(), {
          observe,
          failCode: 'KUBELET_START_FAILED',
        });
        return;
      }
      mkdirSync(dirname(marker), { recursive: true, mode: 0o755 });
      writeFileSync(marker, `${new Date().toISOString()}\n`, { mode: 0o644 });
      let result = 'done';
      if (running) {
        // Already running (a re-run, or started by another tool): restarted only if its config changed since.
        const restarted = await applyRenderedConfig(ctx, deps, unit, deps.configFiles(), {
          observe,
          failCode: 'KUBELET_START_FAILED',
        });
        if (!restarted) {
          ctx.record({ kubeletState: `${before.activeState}/${before.subState}` });
          return;
        }
      } else {
        ctx.status(`starting ${unit}`);
        result = await deps.systemd.start(unit, ctx.signal);
      }
      const state = await deps.systemd.state(unit);
      ctx.record({ kubeletJob: result, kubeletState: `${state.activeState}/${state.subState}` });
      if (result === 'done' && (state.activeState === 'active' || state.activeState === 'activating')) return;
      const tail = await deps.tail(unit, 10, ctx.signal);
      const why =
        result === 'skipped'
          ? `its start condition is unmet (is the node-bootstrap drop-in's marker ${marker} readable?)`
          : `job result ${result}, now ${state.activeState}/${state.subState} (Result=${state.result})`;
      throw new BootError(
        'KUBELET_START_FAILED',
        `${unit} did not start: ${why}${tail.length ? `; last journal lines: ${tail.join(' | ')}` : ''}`,
        { hint: `read \`journalctl -u ${unit} -b\`` },
      );
    },
  };
}
