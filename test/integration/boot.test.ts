/**
 * containerd readiness end to end: the shipped bundle (`node-bootstrap run`) against real containerd
 * 1.6 and 1.7 that start late, die with SIGKILL, never start, or run without their CRI plugin; and a
 * run stopped by SIGTERM. Asserted as an operator sees it: exit code, the verdict line, status.json.
 * Both containerd versions run side by side (each its own testbed); the tests of one version run in
 * order, each leaving containerd running for the next.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestbed, type Testbed } from '../testbed/index.js';
import {
  type BundleResult,
  ensureBuilt,
  explain,
  failure,
  freshStateDir,
  leaks,
  phaseNow,
  runBundle,
  scenarioConfig,
  startBundle,
  testbedSecrets,
  until,
} from './lib/run-bundle.js';

const VERSIONS = ['1.6', '1.7'] as const;
/**
 * Concurrency: the suites (one per containerd version, and the testbeds inside each) run side by
 * side; the tests sharing one testbed run in order, one after the other.
 */
const step = it.sequential;
/** Generous enough for a 3 s late start on a loaded machine; failure cases lower their own. */
const TIMEOUTS = { 'containerd-socket': '8s', cri: '6s', 'sandbox-image': '8s' };

beforeAll(ensureBuilt, 120_000);

describe.concurrent.each(VERSIONS)('containerd %s readiness (bundle run)', (version) => {
  describe('socket and CRI', () => {
    let tb: Testbed;
    let secrets: string[];

    beforeAll(async () => {
      tb = await startTestbed({ containerd: { version }, config: { timeouts: TIMEOUTS } });
      secrets = testbedSecrets(tb);
    });
    afterAll(async () => {
      await tb?.stop();
    });
    // Every test starts from a running containerd (a failed one must not cascade).
    beforeEach(async () => {
      await tb.containerd!.start();
    });

    const run = (stateDir: string, config = tb.configFile) =>
      runBundle('run', { config, stateDir, env: tb.env });

    /** What every outcome must satisfy: no secret anywhere, and a timeline that agrees with the exit. */
    function common(r: BundleResult): void {
      expect(leaks(r, secrets)).toEqual([]);
      expect(r.timeline?.exitCode, explain(r)).toBe(r.code);
      expect(r.timeline?.result).toBe(r.code === 0 ? 'ok' : 'failed');
    }

    /** Starts a run while containerd is down; resolves once it is inside the containerd-socket wait. */
    async function runWaitingForSocket(stateDir: string, config = tb.configFile) {
      const running = startBundle('run', { config, stateDir, env: tb.env });
      const waiting = await until(() => Boolean(phaseNow(stateDir, 'containerd-socket')?.startedAt), 10_000);
      expect(waiting, 'the run reached the containerd-socket phase').toBe(true);
      return running;
    }

    step(
      `a healthy containerd ${version}: OK; the pinned-label capability and its warning are recorded`,
      async () => {
        const r = await run(freshStateDir(tb));
        expect(r.code, explain(r)).toBe(0);
        expect(r.verdict).toMatch(/^node-bootstrap: OK 3\/6 phases in \d+\.\d\ds /);
        common(r);
        // What an operator reads on stdout (the console under systemd): a line per phase, the verdict.
        expect(r.stdout.split('\n').filter(Boolean)).toEqual([
          'node-bootstrap: phase=containerd-unit skipped',
          expect.stringMatching(/^node-bootstrap: phase=containerd-socket done \d+\.\d\ds$/),
          expect.stringMatching(/^node-bootstrap: phase=cri done \d+\.\d\ds( warnings=1)?$/),
          expect.stringMatching(/^node-bootstrap: phase=sandbox-image done \d+\.\d\ds( warnings=1)?$/),
          'node-bootstrap: phase=resolv-conf skipped',
          'node-bootstrap: phase=kubelet skipped',
          r.verdict,
        ]);
        const cri = r.phase('cri');
        expect(cri.facts.containerdVersion).toMatch(new RegExp(`^${version.replace('.', '\\.')}\\.`));
        expect(cri.facts.pinsLabelledImages).toBe(version === '1.7');
        if (version === '1.6') {
          expect(cri.warnings).toEqual([
            expect.stringMatching(
              /^containerd 1\.6\.\S+ does not honour the pinned label in CRI \(needs 1\.7\.10\+\): kubelet image GC can delete the pause image$/,
            ),
          ]);
          // The sandbox-image phase repeats it for the image it could not pin: two warnings in all.
          expect(r.verdict).toMatch(/ warnings=2 skipped=/);
        } else {
          expect(cri.warnings).toEqual([]);
          expect(r.verdict).not.toMatch(/warnings=/);
        }
      },
    );

    step.each([0, 1_000, 3_000])(
      'containerd started %i ms after the run began waiting: OK, socketWaitMs and criWaitMs recorded',
      async (delayMs) => {
        await tb.containerd!.stop();
        expect(existsSync(tb.containerd!.socket), 'a clean stop removes the socket').toBe(false);
        const state = freshStateDir(tb);
        const running = await runWaitingForSocket(state);
        const started = delayMs ? tb.containerd!.start({ delayMs }) : tb.containerd!.start();
        const r = await running.done;
        await started;
        expect(r.code, explain(r)).toBe(0);
        common(r);
        const { socketWaitMs } = r.phase('containerd-socket').facts;
        expect(socketWaitMs).toBeGreaterThanOrEqual(delayMs - 50);
        // Event-driven: the socket is seen within moments of appearing, not at the next poll.
        expect(socketWaitMs).toBeLessThan(delayMs + 2_500);
        expect(r.phase('cri').facts.criWaitMs).toBeTypeOf('number');
        expect(r.phase('cri').result).toBe('ok');
        expect(r.phase('sandbox-image').result).toBe('ok');
      },
    );

    step(
      'containerd killed with SIGKILL leaves a stale socket: the run waits ("not yet"); restarted → OK',
      async () => {
        await tb.containerd!.kill();
        expect(existsSync(tb.containerd!.socket), 'SIGKILL leaves the socket file').toBe(true);
        const state = freshStateDir(tb);
        const running = await runWaitingForSocket(state);
        await sleep(1_000);
        expect(running.child.exitCode, 'still waiting on the stale socket').toBeNull();
        await tb.containerd!.start();
        const r = await running.done;
        expect(r.code, explain(r)).toBe(0);
        common(r);
        expect(r.phase('containerd-socket').facts.socketWaitMs).toBeGreaterThanOrEqual(950);
      },
    );

    step.each([
      ['stopped (no socket file)', 'stop', /containerd socket \S+ never appeared after 1\.\ds$/],
      [
        'killed (stale socket file)',
        'kill',
        /containerd socket \S+ exists but refuses connections \(stale socket\) after 1\.\ds$/,
      ],
    ] as const)(
      'containerd %s and never started: CONTAINERD_SOCKET_TIMEOUT, exit 75, at the deadline',
      async (_what, how, message) => {
        await tb.containerd![how]();
        const config = scenarioConfig(tb, { timeouts: { 'containerd-socket': '1500ms' } });
        const r = await run(freshStateDir(tb), config);
        expect(r.code, explain(r)).toBe(75);
        common(r);
        expect(r.verdict).toMatch(
          /^node-bootstrap: FAILED phase=containerd-socket code=CONTAINERD_SOCKET_TIMEOUT retryable=true hint="containerd never opened its socket/,
        );
        const f = failure(r);
        expect(f).toMatchObject({ phase: 'containerd-socket', code: 'CONTAINERD_SOCKET_TIMEOUT' });
        expect(f.message).toMatch(message);
        expect(r.phase('containerd-socket').durationMs).toBeGreaterThanOrEqual(1_450);
        expect(r.phase('cri').result).toBe('not-run');
        expect(r.phase('sandbox-image').result).toBe('not-run');
      },
    );

    step(
      'SIGTERM during the wait: exit 75 ABORTED at once, status.json failed/aborted; a re-run succeeds',
      async () => {
        await tb.containerd!.stop();
        const state = freshStateDir(tb);
        const running = await runWaitingForSocket(state);
        await sleep(200);
        const sent = performance.now();
        running.child.kill('SIGTERM');
        const r = await running.done;
        expect(performance.now() - sent).toBeLessThan(1_500);
        expect(r.code, explain(r)).toBe(75);
        common(r);
        expect(r.verdict).toMatch(
          /^node-bootstrap: FAILED phase=containerd-socket code=ABORTED retryable=true/,
        );
        expect(r.timeline).toMatchObject({ result: 'failed', exitCode: 75 });
        expect(r.phase('containerd-socket')).toMatchObject({
          result: 'failed',
          error: { code: 'ABORTED', retryable: true },
        });
        expect(r.phase('containerd-socket').error?.message).toMatch(/SIGTERM/);
        expect(r.phase('cri').result).toBe('not-run');

        await tb.containerd!.start();
        const again = await run(state);
        expect(again.code, explain(again)).toBe(0);
        common(again);
        expect(again.timeline?.phases.map((p) => p.result)).toEqual([
          'skipped',
          'ok',
          'ok',
          'ok',
          'skipped',
          'skipped',
        ]);
      },
    );
  });

  describe('CRI plugin disabled', () => {
    let tb: Testbed;
    beforeAll(async () => {
      tb = await startTestbed({
        containerd: { version, cri: false },
        registry: false,
        ecr: false,
        imds: false,
        config: { timeouts: TIMEOUTS },
      });
    });
    afterAll(async () => {
      await tb?.stop();
    });

    step('CRI_UNIMPLEMENTED, exit 78 at once, the hint names disabled_plugins', async () => {
      const r = await runBundle('run', { config: tb.configFile, stateDir: freshStateDir(tb), env: tb.env });
      expect(r.code, explain(r)).toBe(78);
      expect(r.verdict).toMatch(
        /^node-bootstrap: FAILED phase=cri code=CRI_UNIMPLEMENTED retryable=false hint=".*disabled_plugins/,
      );
      // The failed phase's own line carries the code, the hint and the error: MESSAGE alone suffices.
      expect(r.stdout).toMatch(
        /^node-bootstrap: phase=cri FAILED code=CRI_UNIMPLEMENTED \d+\.\d\ds hint=".*disabled_plugins.*" error=".*unknown service runtime\.v1\.RuntimeService.*"$/m,
      );
      const f = failure(r);
      expect(f).toMatchObject({ phase: 'cri', code: 'CRI_UNIMPLEMENTED' });
      expect(f.message).toMatch(/does not serve CRI: .*unknown service runtime\.v1\.RuntimeService/);
      expect(f.hint).toMatch(/remove "cri" from disabled_plugins in \/etc\/containerd\/config\.toml/);
      // Not retried until the deadline: a configuration error is final.
      expect(r.phase('cri').durationMs).toBeLessThan(2_000);
      expect(r.phase('sandbox-image').result).toBe('not-run');
      expect(r.timeline).toMatchObject({ result: 'failed', exitCode: 78 });
    });
  });
});
