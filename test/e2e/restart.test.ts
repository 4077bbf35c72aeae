/**
 * Restart semantics in a booted systemd with real containerd 1.7 (Debian's containerd.service,
 * Type=notify) and the kubelet stand-in: a rendered config changed after the daemon started is
 * applied by a D-Bus RestartUnit, `--observe` only reports it, and an unchanged config restarts
 * nothing. The boot itself (node-bootstrap.service) ran first, as shipped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunStatus } from '../../src/runner/status.js';
import { startTestbed, type Testbed } from '../testbed/index.js';
import { bootSystemd, readInside, type SystemdContainer } from './harness.js';
import { BUNDLE, CONFIG, show, workerNode } from './lib/boot-node.js';

const CTRD = 'containerd.service';
const KUBELET = 'kubelet.service';
/** Only the phases restart semantics touch (the sandbox image and resolv.conf are other tests'). */
const SKIP = ['--skip', 'sandbox-image,resolv-conf'];

let tb: Testbed;
let c: SystemdContainer;

beforeAll(async () => {
  tb = await startTestbed({ containerd: false });
  c = await bootSystemd({ ...(await workerNode({ name: 'restart', tb })), bootTimeoutMs: 30_000 });
}, 120_000);
afterAll(async () => {
  await c?.stop();
  await tb?.stop();
});

/** `node-bootstrap run` inside the node (its own state dir), with the timeline it wrote. */
async function run(stateDir: string, ...args: string[]) {
  const r = await c.exec(
    ['/usr/bin/node', BUNDLE, 'run', '--config', CONFIG, '--state-dir', stateDir, ...SKIP, ...args],
    {
      timeoutMs: 60_000,
    },
  );
  const status = JSON.parse(await readInside(c, `${stateDir}/status.json`)) as RunStatus;
  const phase = (n: string) => status.phases.find((p) => p.name === n)!;
  return { ...r, status, phase };
}
const started = async (unit: string) => (await show(c, unit)).ExecMainStartTimestampMonotonic;

describe('restart semantics: containerd and kubelet run on their rendered config', () => {
  it.sequential('the boot: containerd started after its config was written, so nothing was restarted', async () => {
    expect(c.failedUnits).toEqual([]);
    const status = JSON.parse(await readInside(c, '/run/node-bootstrap/status.json')) as RunStatus;
    expect(status.result).toBe('ok');
    const unit = status.phases.find((p) => p.name === 'containerd-unit')!;
    expect(unit.facts).toMatchObject({ containerdConfigCurrent: true });
    expect(unit.facts.containerdRestarted).toBeUndefined();
  });

  it.sequential('a re-run with nothing changed restarts nothing', async () => {
    const before = [await started(CTRD), await started(KUBELET)];
    const r = await run('/run/nb-rerun');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.phase('containerd-unit').facts).toMatchObject({ containerdConfigCurrent: true });
    expect(r.phase('kubelet').facts).toMatchObject({ kubeletWasRunning: true, kubeletConfigCurrent: true });
    expect([await started(CTRD), await started(KUBELET)]).toEqual(before);
  });

  it.sequential('config.toml rewritten after containerd started: --observe reports it and restarts nothing', async () => {
    await c.exec(['touch', '/etc/containerd/config.toml'], { check: true });
    const before = await started(CTRD);
    const r = await run('/run/nb-observe', '--observe');
    expect(r.code, r.stdout + r.stderr).toBe(69);
    expect(r.status).toMatchObject({ command: 'observe', result: 'failed', exitCode: 69 });
    expect(r.phase('containerd-unit').error).toMatchObject({
      code: 'CONFIG_NOT_APPLIED',
      message: expect.stringMatching(
        /^\/etc\/containerd\/config\.toml changed at \S+, after containerd\.service started at \S+: containerd\.service runs on the older config \(observe: would restart containerd\.service\)$/,
      ),
    });
    // keepGoing: the later phases still report; kubelet's config did not change.
    expect(r.phase('cri').result).toBe('ok');
    expect(r.phase('kubelet')).toMatchObject({ result: 'ok', facts: { kubeletConfigCurrent: true } });
    expect(r.stdout).toMatch(/^node-bootstrap: FAILED phase=containerd-unit code=CONFIG_NOT_APPLIED/m);
    expect(await started(CTRD)).toBe(before);
  });

  it.sequential('then run restarts containerd over D-Bus and waits for its socket and CRI again', async () => {
    const before = await started(CTRD);
    const r = await run('/run/nb-restart');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.phase('containerd-unit').facts).toMatchObject({
      containerdConfigCurrent: false,
      containerdRestarted: true,
      containerdRestartReason: expect.stringMatching(/^\/etc\/containerd\/config\.toml changed at /),
    });
    expect(r.phase('cri').result).toBe('ok');
    const after = await show(c, CTRD);
    expect(after.ExecMainStartTimestampMonotonic).toBeGreaterThan(before);
    expect(after.ActiveState).toBe('active');
    // Applied: a second run finds it current.
    const again = await run('/run/nb-restart-2');
    expect(again.phase('containerd-unit').facts.containerdRestarted).toBeUndefined();
  });

  it.sequential("kubelet's flags file written after kubelet started: kubelet is restarted", async () => {
    await c.exec(['mkdir', '-p', '/etc/eks/kubelet'], { check: true });
    await c.exec(['sh', '-c', 'echo KUBELET_EXTRA_ARGS= > /etc/eks/kubelet/environment'], { check: true });
    const before = await started(KUBELET);
    const r = await run('/run/nb-kubelet');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.phase('kubelet').facts).toMatchObject({
      kubeletWasRunning: true,
      kubeletRestarted: true,
      kubeletRestartReason: expect.stringMatching(/^\/etc\/eks\/kubelet\/environment changed at /),
    });
    const after = await show(c, KUBELET);
    expect(after.ExecMainStartTimestampMonotonic).toBeGreaterThan(before);
    expect(after.ActiveState).toBe('active');
  });
});
