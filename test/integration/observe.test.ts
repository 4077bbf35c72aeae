/**
 * `run --observe` against real containerd 1.7, the real registry and the ECR/IMDS emulators: it
 * reports what it finds and what it would do, and changes nothing: no pull, no import, no label,
 * no resolv.conf repair, no ECR call. status.json and the verdict are still written; the exit code
 * is 0 for a node as it should be, else the first failure's.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ContainerdClient,
  createContainerdClient,
  PINNED_LABEL,
} from '../../src/adapters/containerd.js';
import { type CriClient, createCriClient } from '../../src/adapters/cri.js';
import { PAUSE_IMAGE, startTestbed, type Testbed } from '../testbed/index.js';
import {
  type BundleResult,
  ensureBuilt,
  explain,
  freshStateDir,
  runBundle,
  scenarioConfig,
} from './lib/run-bundle.js';

const step = it.sequential;
const signal = () => AbortSignal.timeout(5_000);
const TIMEOUTS = { 'containerd-socket': '3s', cri: '3s', 'sandbox-image': '8s' };

describe('run --observe on containerd 1.7', () => {
  let tb: Testbed;
  let cri: CriClient;
  let ctrd: ContainerdClient;
  const run = (o: { observe?: boolean; config?: string; stateDir?: string; skip?: string } = {}) =>
    runBundle('run', {
      config: o.config ?? scenarioConfig(tb, { sandboxImage: { source: 'registry' } }),
      stateDir: o.stateDir ?? freshStateDir(tb),
      env: tb.env,
      ...(o.skip ? { skip: o.skip } : {}),
      args: o.observe === false ? [] : ['--observe'],
    });
  const pinnedLabel = async () =>
    (await ctrd.getImage(PAUSE_IMAGE, 'k8s.io', signal()).catch(() => null))?.labels[PINNED_LABEL];

  beforeAll(async () => {
    await ensureBuilt();
    tb = await startTestbed({
      containerd: { version: '1.7' },
      archive: true,
      config: { timeouts: TIMEOUTS },
    });
    cri = createCriClient(tb.containerd!.socket);
    ctrd = createContainerdClient(tb.containerd!.socket);
  }, 120_000);
  afterAll(async () => {
    cri?.close();
    ctrd?.close();
    await tb?.stop();
  });

  const sandbox = (r: BundleResult) => r.phase('sandbox-image');

  step(
    'the sandbox image missing: SANDBOX_IMAGE_MISSING, exit 69, what it would try; nothing pulled, no ECR call',
    async () => {
      const r = await run();
      expect(r.code, explain(r)).toBe(69);
      expect(r.verdict).toMatch(/^node-bootstrap: FAILED phase=sandbox-image code=SANDBOX_IMAGE_MISSING/);
      expect(sandbox(r).error?.message).toBe(
        `${PAUSE_IMAGE} is not in containerd's k8s.io namespace (observe: would try ${PAUSE_IMAGE}, then archive ${tb.archiveFile})`,
      );
      expect(r.timeline).toMatchObject({ command: 'observe', result: 'failed', exitCode: 69 });
      expect(await cri.imageStatus(PAUSE_IMAGE, signal())).toBeNull();
      expect(tb.ecr!.requests).toEqual([]);
    },
  );

  step('after a real run: the node is as it should be, exit 0, still no ECR call', async () => {
    const state = freshStateDir(tb);
    const real = await run({ observe: false, stateDir: state });
    expect(real.code, explain(real)).toBe(0);
    const requests = tb.ecr!.requests.length;
    const r = await run({ stateDir: state });
    expect(r.code, explain(r)).toBe(0);
    expect(r.timeline).toMatchObject({ command: 'observe', result: 'ok', exitCode: 0 });
    expect(sandbox(r).facts).toMatchObject({ source: 'present', pinned: true });
    expect(tb.ecr!.requests.length).toBe(requests);
  });

  step('the pin label removed: PAUSE_NOT_PINNED, exit 69, and the label stays removed', async () => {
    await ctrd.setImageLabel(PAUSE_IMAGE, PINNED_LABEL, '', 'k8s.io', signal());
    const r = await run();
    expect(r.code, explain(r)).toBe(69);
    expect(sandbox(r).error).toMatchObject({
      code: 'PAUSE_NOT_PINNED',
      message: `${PAUSE_IMAGE} does not carry ${PINNED_LABEL}=pinned (observe: would pin it)`,
    });
    expect(await pinnedLabel()).toBeUndefined();
    const fixed = await run({ observe: false });
    expect(fixed.code, explain(fixed)).toBe(0);
    expect(await pinnedLabel()).toBe('pinned');
  });

  step(
    'resolvConfPolicy repair and a broken resolv.conf: RESOLV_CONF_INVALID, exit 78, nothing written',
    async () => {
      const broken = join(tb.dir, 'broken-resolv.conf');
      writeFileSync(broken, 'nameserver 127.0.0.53\n');
      const state = freshStateDir(tb);
      const config = scenarioConfig(tb, { kubelet: { resolvConf: broken, resolvConfPolicy: 'repair' } });
      const r = await run({ config, stateDir: state, skip: 'containerd-unit,kubelet' });
      expect(r.code, explain(r)).toBe(78);
      expect(r.phase('resolv-conf').error?.message).toMatch(
        new RegExp(`\\(observe: would write a corrected copy to ${state}/resolv\\.conf\\)$`),
      );
      expect(readdirSync(state).sort()).toEqual(['status.json']);
      expect(existsSync(join(state, 'kubelet-resolv.env'))).toBe(false);
    },
  );

  step(
    "timeouts.run cuts a phase's longer deadline: containerd down, the run ends at 1.5 s, not 10 s",
    async () => {
      await tb.containerd!.stop();
      try {
        const config = scenarioConfig(tb, { timeouts: { 'containerd-socket': '10s', run: '1500ms' } });
        const r = await run({ config, observe: false });
        expect(r.code, explain(r)).toBe(75);
        const socket = r.phase('containerd-socket');
        expect(socket.error?.code).toBe('CONTAINERD_SOCKET_TIMEOUT');
        expect(socket.durationMs).toBeGreaterThanOrEqual(1_400);
        expect(socket.durationMs).toBeLessThan(5_000);
        // Nothing after the failed phase starts (the skipped ones are not reached either).
        expect(r.timeline?.phases.filter((p) => p.result === 'not-run').map((p) => p.name)).toEqual([
          'cri',
          'sandbox-image',
          'resolv-conf',
          'kubelet',
        ]);
      } finally {
        await tb.containerd!.start();
      }
    },
  );

  step(
    'containerd down: every phase still reports (keepGoing); the first failure is the verdict',
    async () => {
      await tb.containerd!.stop();
      try {
        const config = scenarioConfig(tb, {
          region: 'us-west-2',
          timeouts: { 'containerd-socket': '500ms', cri: '500ms', 'sandbox-image': '500ms' },
        });
        const r = await run({ config, skip: 'containerd-unit,kubelet' });
        expect(r.code, explain(r)).toBe(75);
        expect(r.timeline?.phases.map((p) => [p.name, p.result, p.error?.code])).toEqual([
          ['containerd-unit', 'skipped', undefined],
          ['containerd-socket', 'failed', 'CONTAINERD_SOCKET_TIMEOUT'],
          ['cri', 'failed', expect.any(String)],
          ['sandbox-image', 'failed', expect.any(String)],
          ['resolv-conf', 'ok', undefined],
          ['kubelet', 'skipped', undefined],
        ]);
        expect(r.verdict).toMatch(
          /^node-bootstrap: FAILED phase=containerd-socket code=CONTAINERD_SOCKET_TIMEOUT/,
        );
      } finally {
        await tb.containerd!.start();
      }
    },
  );
});
