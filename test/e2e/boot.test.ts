/**
 * The real product as the real unit in a booted systemd: node-bootstrap.service (the shipped unit
 * from systemd/, ExecStart → the built bundle) with Debian's containerd.service running real
 * containerd, the testbed's TLS registry, ECR API and IMDS reached over the host network, and a
 * kubelet stand-in (lib/boot-kubelet.ts) gated by the shipped kubelet drop-in. Scenarios: a normal
 * boot, containerd slow and failing its first start, containerd broken, kubelet started by hand
 * before node-bootstrap, SIGTERM in the middle of a pull, and 20 boots with everything enabled.
 */
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCriClient } from '../../src/adapters/cri.js';
import type { RunStatus } from '../../src/runner/status.js';
import { startTestbed, type Testbed } from '../testbed/index.js';
import { bootSystemd, eventually, type JournalEntry, readInside, type SystemdContainer } from './harness.js';
import {
  ALL,
  BUNDLE,
  ctrImages,
  MARKER,
  PAUSE_IMAGE,
  REPO,
  SOCKET,
  STATE_DIR,
  show,
  stats,
  TEXTFILE_DIR,
  type WorkerNodeOptions,
  workerNode,
} from './lib/boot-node.js';
import { type RegistryProxy, startRegistryProxy } from './lib/boot-proxy.js';

const NB = 'node-bootstrap.service';
/** PID 1's "Starting <unit>..." entries (sd-messages.h SD_MESSAGE_UNIT_STARTING). */
const SD_MESSAGE_UNIT_STARTING = '7d4958e842da4a758f6c1cdc7b36dcc5';
/** Phases every boot run has (others, e.g. resolv-conf, may sit between them). */
const PHASES = ['containerd-unit', 'containerd-socket', 'cri', 'sandbox-image', 'kubelet'];

/** Every phase of the timeline ok, in boot order, with at least the core ones. */
function expectAllOk(status: RunStatus, where?: string): void {
  const names = status.phases.map((p) => p.name);
  expect(
    names.filter((n) => PHASES.includes(n)),
    where,
  ).toEqual(PHASES);
  expect(
    status.phases.filter((p) => p.result !== 'ok'),
    where,
  ).toEqual([]);
}
const log: string[] = [];

let tb: Testbed;
let proxy: RegistryProxy;

beforeAll(async () => {
  if (!existsSync(`${REPO}/dist/node-bootstrap.mjs`))
    throw new Error('dist/node-bootstrap.mjs is missing: run `npm run build` first');
  tb = await startTestbed({ containerd: false });
  proxy = await startRegistryProxy(tb.registry!.host, tb.pki!);
});

afterAll(async () => {
  await proxy?.close();
  await tb?.stop();
  console.log(`e2e boot:\n${log.map((l) => `  ${l}`).join('\n')}`);
});

/** Boot a worker node; always stopped by `use` (even when the test fails). */
async function withNode<T>(
  o: Omit<WorkerNodeOptions, 'tb'>,
  use: (c: SystemdContainer) => Promise<T>,
  bootTimeoutMs = 30_000,
): Promise<T> {
  const c = await bootSystemd({ ...(await workerNode({ ...o, tb })), bootTimeoutMs });
  try {
    return await use(c);
  } finally {
    await c.stop();
    lifecycle.push({ runningMs: c.timings.runningMs, stopMs: c.timings.stopMs });
  }
}
const lifecycle: { runningMs: number; stopMs: number }[] = [];

const statusJson = async (c: SystemdContainer): Promise<RunStatus> =>
  JSON.parse(await readInside(c, `${STATE_DIR}/status.json`)) as RunStatus;

const nodeBootstrap = (c: SystemdContainer, ...args: string[]) =>
  c.exec(['/usr/bin/node', BUNDLE, ...args], { timeoutMs: 15_000 });

/** An entry is attributed to the unit by journald's own lookup of the sender, or through OBJECT_PID. */
const unitOf = (e: JournalEntry): unknown => e._SYSTEMD_UNIT ?? e.OBJECT_SYSTEMD_UNIT;

/** CRI's view of the sandbox image, from the host through the container's socket. */
async function criImage(c: SystemdContainer) {
  const cri = createCriClient(c.path(SOCKET), { waitForReady: false });
  try {
    return await cri.imageStatus(PAUSE_IMAGE, AbortSignal.timeout(5_000));
  } finally {
    cri.close();
  }
}

/** For assertion messages: the units' states and node-bootstrap's last journal lines. */
async function diagnose(c: SystemdContainer): Promise<string> {
  const units = await Promise.all(
    ALL.map(async (u) => {
      const s = await show(c, u);
      return `${u}: ${s.ActiveState}/${s.SubState} Result=${s.Result} ${s.StatusText}`;
    }),
  );
  const tail = await c.exec(['journalctl', '-u', NB, '-o', 'cat', '-n', '12', '--no-pager']);
  return `${c.name}, failed units: ${c.failedUnits.join(' ') || 'none'}\n${units.join('\n')}\n${tail.stdout}`;
}

/** kubelet.service's start at boot was refused by the gate (PID 1 says so in the journal). */
const refusedAtBoot = async (c: SystemdContainer): Promise<boolean> =>
  (await c.journal(['_PID=1', 'UNIT=kubelet.service'])).some(
    (e) => e.MESSAGE === 'kubelet.service: Starting requested but asserts failed.',
  );

/** µs to add to a CLOCK_MONOTONIC time (systemd's *Monotonic, the same clock in the container) for wall time. */
const monoToWallUs = (): number => Date.now() * 1000 - Number(process.hrtime.bigint() / 1000n);

const ms = (fromUs: number, toUs: number): number => Math.round((toUs - fromUs) / 1000);

describe('node-bootstrap.service in a booted systemd', () => {
  it.concurrent('normal boot: containerd, node-bootstrap, kubelet active; pause pinned; STATUS, journal, report', async () => {
    await withNode({ name: 'normal' }, async (c) => {
      expect(c.failedUnits, await diagnose(c)).toEqual([]);
      const [ctrd, nb, kubelet] = await Promise.all(ALL.map((u) => show(c, u)));
      expect([ctrd!.ActiveState, ctrd!.SubState]).toEqual(['active', 'running']);
      expect([nb!.ActiveState, nb!.SubState, nb!.Result]).toEqual(['active', 'exited', 'success']);
      expect([kubelet!.ActiveState, kubelet!.SubState]).toEqual(['active', 'running']);
      // kubelet, enabled, was refused at boot (gate closed), then started by node-bootstrap.
      expect(await refusedAtBoot(c)).toBe(true);
      expect(kubelet!.ExecMainStartTimestampMonotonic).toBeGreaterThan(ctrd!.ActiveEnterTimestampMonotonic);
      expect(kubelet!.StatusText).toMatch(/present and pinned \(containerd 1\.7\.\d+.*CRI pinned=true\)/);

      // The pause image: present and pinned, seen by CRI and in containerd's labels.
      expect(await criImage(c)).toMatchObject({ pinned: true });
      expect((await ctrImages(c)).get(PAUSE_IMAGE)).toMatch(/io\.cri-containerd\.pinned=pinned/);

      // systemctl status shows the final STATUS= line.
      const st = await c.systemctl('status', NB);
      expect(st.stdout).toMatch(/Status: "done: all gates passed"/);

      // The journal: native entries with fields, attributed to the unit.
      const cri = await c.journal(['NODE_BOOTSTRAP_PHASE=cri']);
      expect(cri.map((e) => e.NODE_BOOTSTRAP_RESULT)).toEqual(['started', 'ok']);
      for (const e of cri) expect(unitOf(e)).toBe(NB);
      const viaUnit = await c.journal(['-u', NB, 'NODE_BOOTSTRAP_PHASE=cri']);
      expect(viaUnit.length).toBe(2);
      const all = await c.journal(['-u', NB, 'NODE_BOOTSTRAP_COMMAND=run']);
      log.push(
        `journal: ${all.length} entries of the run, _SYSTEMD_UNIT set on ${all.filter((e) => e._SYSTEMD_UNIT === NB).length}, OBJECT_SYSTEMD_UNIT on ${all.filter((e) => e.OBJECT_SYSTEMD_UNIT === NB).length}`,
      );

      // report, from status.json: every phase ok.
      const status = await statusJson(c);
      expectAllOk(status);
      // The image's startup cache (made by install at image-build time): the parts the boot loaded
      // (heavy; dbus for the unit phases; the SDK only if it needed a token) came from it, compiled
      // from their V8 code caches.
      expect(status.startup?.map((p) => p.name)).toEqual(expect.arrayContaining(['heavy', 'dbus']));
      for (const p of status.startup ?? [])
        expect(p).toMatchObject({ source: 'startup-cache', codeCache: 'startup-cache' });
      log.push(`startup: ${status.startup?.map((p) => `${p.name} ${p.ms} ms`).join(', ')}`);
      // Where operators look: the phase and verdict lines on the console (StandardOutput=journal+console),
      // a 0644 copy of the timeline in /var/log/node-bootstrap, the textfile metrics.
      // journald forwards them as `[ 1522.838468] node-bootstrap[42]: node-bootstrap: OK 6/6 phases in 1.25s`.
      const onConsole = (line: string) =>
        new RegExp(`^\\[ *\\d+\\.\\d+\\] node-bootstrap\\[\\d+\\]: node-bootstrap: ${line}`, 'm');
      const n = status.phases.length;
      await eventually('the verdict on the console', () =>
        onConsole(`OK ${n}/${n} phases in \\d+\\.\\d\\ds$`).test(c.console()),
      );
      for (const p of status.phases)
        expect(c.console()).toMatch(onConsole(`phase=${p.name} done \\d+\\.\\d\\ds`));
      const copy = await readInside(c, '/var/log/node-bootstrap/status.json');
      expect(JSON.parse(copy)).toEqual(status);
      // One per-boot copy, named after the kernel's boot id. (nspawn overmounts the container's
      // boot_id file with an id of its own, and the unit's ProtectKernelTunables= remount of /proc/sys
      // hides that overmount again: inside the unit the id is the host kernel's, so only the shape is
      // checked here. On a node both are the kernel's.)
      const ls = (await c.exec(['ls', '/var/log/node-bootstrap'], { check: true })).stdout.trim().split('\n');
      expect(ls.sort()).toEqual([
        expect.stringMatching(/^status-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.json$/),
        'status.json',
      ]);
      expect(await readInside(c, `/var/log/node-bootstrap/${ls[0]}`)).toBe(copy);
      const modes = await c.exec(
        ['stat', '-c', '%a %n', '/var/log/node-bootstrap/status.json', `${TEXTFILE_DIR}/node_bootstrap.prom`],
        { check: true },
      );
      expect(
        modes.stdout
          .trim()
          .split('\n')
          .map((l) => l.split(' ')[0]),
      ).toEqual(['644', '644']);
      const prom = await readInside(c, `${TEXTFILE_DIR}/node_bootstrap.prom`);
      expect(prom).toMatch(/^node_bootstrap_run_success 1$/m);
      for (const p of status.phases)
        expect(prom).toContain(`node_bootstrap_phase_success{phase="${p.name}"} 1\n`);
      log.push(`metrics file of a booted node:\n${prom}`);
      const phases = status.phases.map((p) => p.name);
      const fromStatus = await nodeBootstrap(c, 'report', '--state-dir', STATE_DIR);
      expect(fromStatus.code).toBe(0);
      for (const p of phases) expect(fromStatus.stdout).toMatch(new RegExp(`^${p}\\s+ok\\s+\\d+ ms`, 'm'));

      // report without status.json: the same timeline, rebuilt from this boot's journal.
      await c.exec(['rm', `${STATE_DIR}/status.json`], { check: true });
      const fromJournal = await nodeBootstrap(c, 'report', '--state-dir', STATE_DIR);
      expect(fromJournal.code).toBe(0);
      expect(fromJournal.stdout).toMatch(/^node-bootstrap \d+\.\d+\.\d+\S* run: ok \(exit 0\)/);
      expect(fromJournal.stdout).toContain(`(from this boot's journal: ${STATE_DIR}/status.json is absent)`);
      for (const p of phases) expect(fromJournal.stdout).toMatch(new RegExp(`^${p}\\s+ok\\s+\\d+ ms`, 'm'));
      const json = JSON.parse((await nodeBootstrap(c, 'report', '--source', 'journal', '--json')).stdout);
      expect(json).toMatchObject({ source: 'journal', command: 'run', result: 'ok', exitCode: 0 });
      expect(json.version).toBe(status.version);
      expect(json.phases.map((p: { name: string; result: string; durationMs: number }) => p)).toEqual(
        status.phases.map((p) =>
          expect.objectContaining({ name: p.name, result: p.result, durationMs: p.durationMs }),
        ),
      );
      const missing = await nodeBootstrap(c, 'report', '--source', 'status', '--state-dir', STATE_DIR);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/no timeline at \/run\/node-bootstrap\/status\.json/);
    });
  });

  it.concurrent('nodeadm slot: the real product in nodeadm-run.service after nodeadm-config; journal by that name, console, copy', async () => {
    const o = await workerNode({ name: 'nodeadm-slot', tb });
    const files = o.files as Record<string, string>;
    const slot = '/etc/systemd/system/nodeadm-run.service.d';
    const c = await bootSystemd({
      ...o,
      bootTimeoutMs: 30_000,
      units: {
        ...o.units,
        // nodeadm's two units as the AL2023 AMI has them; nodeadm's own command must never run.
        'nodeadm-config.service':
          "[Unit]\nBefore=cloud-init.service\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'sleep 0.2; echo rendered'\n[Install]\nWantedBy=multi-user.target\n",
        'nodeadm-run.service':
          '[Unit]\nDescription=EKS Nodeadm Run\nAfter=nodeadm-config.service cloud-final.service\nRequires=nodeadm-config.service\n[Service]\nType=oneshot\nExecStart=/bin/false nodeadm init --skip config\n[Install]\nWantedBy=multi-user.target\n',
      },
      files: {
        ...files,
        [`${slot}/10-node-bootstrap.conf`]: readFileSync(
          `${REPO}/systemd/opt-in/nodeadm-run.service.d/10-node-bootstrap.conf`,
          'utf8',
        ),
        // The same test override as node-bootstrap.service's: the bundle from the repository, the testbed's AWS.
        [`${slot}/50-e2e.conf`]: files['/etc/systemd/system/node-bootstrap.service.d/50-e2e.conf']!,
      },
      enable: ['containerd.service', 'kubelet.service', 'nodeadm-config.service', 'nodeadm-run.service'],
    });
    try {
      expect(c.failedUnits, await diagnose(c)).toEqual([]);
      const run = await c.systemctl(
        'show',
        'nodeadm-run.service',
        '--property=Result',
        '--property=ExecMainStatus',
      );
      expect(run.stdout.trim().split('\n').sort()).toEqual(['ExecMainStatus=0', 'Result=success']);
      expect((await show(c, 'kubelet.service')).SubState).toBe('running');
      expect((await show(c, NB)).ActiveState).toBe('inactive');
      // The journal by the unit's name holds node-bootstrap's entries with their fields.
      const cri = await c.journal(['-u', 'nodeadm-run.service', 'NODE_BOOTSTRAP_PHASE=cri']);
      expect(cri.map((e) => e.NODE_BOOTSTRAP_RESULT)).toEqual(['started', 'ok']);
      for (const e of cri) expect(unitOf(e)).toBe('nodeadm-run.service');
      // After nodeadm-config ended.
      const j = await c.journal(['-b']);
      const configDone = j.find(
        (e) => e._PID === '1' && e.UNIT === 'nodeadm-config.service' && e.JOB_RESULT === 'done',
      );
      expect(Number(configDone?.__MONOTONIC_TIMESTAMP)).toBeLessThan(Number(cri[0]?.__MONOTONIC_TIMESTAMP));
      const status = await statusJson(c);
      expectAllOk(status);
      const n = status.phases.length;
      await eventually('the verdict on the console', () =>
        new RegExp(`\\] node-bootstrap\\[\\d+\\]: node-bootstrap: OK ${n}/${n} phases in `).test(c.console()),
      );
      expect(JSON.parse(await readInside(c, '/var/log/node-bootstrap/status.json'))).toEqual(status);
      const rep = JSON.parse((await nodeBootstrap(c, 'report', '--source', 'journal', '--json')).stdout);
      expect(rep).toMatchObject({ source: 'journal', command: 'run', result: 'ok', exitCode: 0 });
      log.push(`nodeadm slot: ${n}/${n} phases ok in nodeadm-run.service, kubelet running`);
    } finally {
      await c.stop();
    }
  });

  it.concurrent('containerd slow and failing its first start: the run waits (STATUS says so), then succeeds', async () => {
    // Every start of containerd takes 2 s; the first one then fails. Debian's unit restarts it 5 s later.
    const containerdService = [
      'ExecStartPre=/bin/sleep 2',
      `ExecStartPre=/bin/sh -c 'test -e /run/e2e-failed-once || { touch /run/e2e-failed-once; echo "e2e: first start fails" >&2; exit 1; }'`,
    ].join('\n');
    await withNode({ name: 'slow', containerdService, recordStatus: true }, async (c) => {
      expect(c.failedUnits, await diagnose(c)).toEqual([]);
      const [ctrd, nb, kubelet] = await Promise.all(ALL.map((u) => show(c, u)));
      expect(ctrd!.NRestarts).toBe(1);
      expect([nb!.ActiveState, nb!.Result]).toEqual(['active', 'success']);
      expect(kubelet!.ActiveState).toBe('active');
      // systemd held node-bootstrap while containerd's slow first start ran (After=containerd.service):
      // node-bootstrap started only once that start had failed, 2 s in; then the run waited itself.
      const jobs = await c.journal(['_PID=1', 'JOB_TYPE=start']);
      const at = (unit: string, what: (e: JournalEntry) => boolean) =>
        Number(jobs.find((e) => e.UNIT === unit && what(e))?.__MONOTONIC_TIMESTAMP);
      const starting = (e: JournalEntry) => e.MESSAGE_ID === SD_MESSAGE_UNIT_STARTING;
      const firstFailed = at('containerd.service', (e) => e.JOB_RESULT === 'failed');
      expect(ms(at('containerd.service', starting), firstFailed)).toBeGreaterThanOrEqual(2_000);
      expect(at(NB, starting)).toBeGreaterThanOrEqual(firstFailed);
      expect(
        ms(
          firstFailed,
          at('containerd.service', (e) => e.JOB_RESULT === 'done'),
        ),
      ).toBeGreaterThan(5_000);
      const unit = (await statusJson(c)).phases[0]!;
      expect(unit).toMatchObject({ name: 'containerd-unit', result: 'ok' });
      expect(unit.facts.containerdUnitWaitMs).toBeGreaterThan(4_000);
      const statuses = (await c.journal(['-t', 'e2e-status'])).map((e) => String(e.MESSAGE));
      expect(statuses).toContainEqual(
        expect.stringMatching(
          /^\[1\/\d\] containerd-unit: waiting for containerd.service: containerd.service failed \(Result=exit-code\); systemd restarts it/,
        ),
      );
      expect(statuses).toContainEqual(
        expect.stringMatching(/containerd-unit: waiting for containerd.service: .*activating \(start-pre\)/),
      );
      expect(statuses.at(-1)).toBe('done: all gates passed');
      log.push(
        `slow containerd: run waited ${unit.facts.containerdUnitWaitMs} ms; STATUS lines: ${statuses.length}`,
      );
    });
  });

  it.concurrent('containerd broken: CONTAINERD_UNIT_FAILED fast (not at the deadline), kubelet never starts, the journal says why', async () => {
    await withNode(
      { name: 'broken', containerdConfig: 'version = 2\n[grpc\n', timeouts: { 'containerd-unit': '60s' } },
      async (c) => {
        expect(c.failedUnits).toEqual([NB]);
        const [ctrd, nb, kubelet] = await Promise.all(ALL.map((u) => show(c, u)));
        // Debian's containerd.service restarts forever (Restart=always): it never reaches `failed`.
        expect([ctrd!.ActiveState, ctrd!.Result]).toEqual(['activating', 'exit-code']);
        expect([nb!.ActiveState, nb!.Result, nb!.ExecMainCode, nb!.ExecMainStatus]).toEqual([
          'failed',
          'exit-code',
          1,
          69,
        ]);
        const tookMs = ms(nb!.ExecMainStartTimestampMonotonic, nb!.ExecMainExitTimestampMonotonic);
        expect(tookMs).toBeLessThan(15_000); // one restart interval (5 s), far from the 60 s deadline
        expect(nb!.StatusText).toMatch(/^failed: CONTAINERD_UNIT_FAILED: containerd.service keeps failing/);
        expect(kubelet!.ExecMainStartTimestampMonotonic).toBe(0);
        expect(existsSync(c.path(MARKER))).toBe(false);

        const errors = await c.journal(['-u', NB, 'NODE_BOOTSTRAP_ERROR=CONTAINERD_UNIT_FAILED']);
        const phase = errors.find((e) => e.NODE_BOOTSTRAP_PHASE === 'containerd-unit');
        expect(phase).toMatchObject({
          NODE_BOOTSTRAP_RESULT: 'failed',
          NODE_BOOTSTRAP_RETRYABLE: 'false',
          NODE_BOOTSTRAP_HINT: expect.stringMatching(/journalctl -u containerd.service -b/),
          MESSAGE: expect.stringMatching(
            /containerd.service keeps failing: 2 failed starts \(Result=exit-code\)/,
          ),
        });
        const verdict = (await c.journal(['-u', NB, '-t', 'node-bootstrap'])).map((e) => String(e.MESSAGE));
        expect(verdict).toContainEqual(
          expect.stringMatching(/FAILED phase=containerd-unit code=CONTAINERD_UNIT_FAILED/),
        );
        log.push(`broken containerd: node-bootstrap failed after ${tookMs} ms (deadline 60 s)`);
      },
    );
  });

  it.concurrent('kubelet by hand before node-bootstrap is refused; SIGTERM mid-pull aborts cleanly; a rerun succeeds', async () => {
    const enable = ['containerd.service', 'kubelet.service'] as WorkerNodeOptions['enable'];
    await withNode({ name: 'gate', enable, registry: proxy.url }, async (c) => {
      // kubelet enabled, node-bootstrap not: kubelet's boot start was refused, and so is one by hand.
      const byHand = await c.systemctl('start', 'kubelet.service');
      expect(byHand.code).not.toBe(0);
      expect(byHand.stderr).toMatch(/Assertion failed on job for kubelet.service/);
      expect((await show(c, 'kubelet.service')).ExecMainStartTimestampMonotonic).toBe(0);

      // A pull that hangs half-way: the registry serves the manifest, then never the blobs.
      proxy.mode = 'stall-blobs';
      const seen = { ...proxy.seen };
      expect((await c.systemctl('start', '--no-block', NB)).code).toBe(0);
      await eventually('the pull to hang on a blob', () => proxy.stalled() > 0, { timeoutMs: 15_000 });
      expect((await show(c, NB)).StatusText).toMatch(/sandbox-image: pulling /);

      const t0 = Date.now();
      const stop = await c.systemctl('stop', NB);
      const stopMs = Date.now() - t0;
      expect(stop.code).toBe(0);
      const nb = await show(c, NB);
      // It exited by itself (code 75), promptly: no SIGKILL after TimeoutStopSec.
      expect([nb.ExecMainCode, nb.ExecMainStatus]).toEqual([1, 75]);
      expect(stopMs).toBeLessThan(3_000);
      const status = await statusJson(c);
      expect(status).toMatchObject({ result: 'failed', exitCode: 75 });
      const pull = status.phases.find((p) => p.name === 'sandbox-image')!;
      expect(pull).toMatchObject({ result: 'failed', error: { code: 'ABORTED', retryable: true } });
      expect(status.phases.find((p) => p.name === 'kubelet')!.result).toBe('not-run');
      expect(existsSync(c.path(MARKER))).toBe(false);
      // Half-pulled: the manifest came, a blob hung, and the cancelled pull let go of it. No image
      // (and so no pinned label) exists for it.
      expect(proxy.seen.manifests).toBeGreaterThan(seen.manifests);
      await eventually('containerd to drop the stalled download', () => proxy.abandoned() > 0);
      expect(await criImage(c)).toBeNull();
      const images = await ctrImages(c);
      expect([...images.values()].filter((l) => l.includes('io.cri-containerd.pinned'))).toEqual([]);
      expect((await show(c, 'kubelet.service')).ExecMainStartTimestampMonotonic).toBe(0);

      // The registry recovers; a rerun completes the pull, pins it and starts kubelet.
      proxy.mode = 'pass';
      const rerun = await c.exec(['systemctl', 'start', NB], { timeoutMs: 30_000 });
      expect(rerun.code).toBe(0);
      expect((await statusJson(c)).result).toBe('ok');
      expect(await criImage(c)).toMatchObject({ pinned: true });
      expect((await show(c, 'kubelet.service')).ActiveState).toBe('active');
      log.push(
        `SIGTERM mid-pull: systemctl stop took ${stopMs} ms; status ${nb.ActiveState}/${nb.Result}; ${proxy.abandoned()} stalled blob request(s) cancelled`,
      );
    });
  });

  it('20 boots with everything enabled at once: no deadlock, no race; containerd active → kubelet started', {
    timeout: 150_000,
  }, async () => {
    const toStarted: number[] = [];
    const toReady: number[] = [];
    const parts: Record<string, number[]> = {};
    const bootOnce = async (i: number) => {
      const containerd = i % 2 === 0 ? '1.7' : '1.6';
      await withNode({ name: `rep${i}`, containerd }, async (c) => {
        const where = `boot ${i} (containerd ${containerd}, ${c.name})`;
        if (c.bootState !== 'running') expect.fail(`${where}: ${c.bootState}\n${await diagnose(c)}`);
        expect((await c.systemctl('list-jobs', '--no-legend')).stdout.trim(), where).toBe('');
        const [ctrd, nb, kubelet] = await Promise.all(ALL.map((u) => show(c, u)));
        expect([ctrd!.ActiveState, nb!.Result, kubelet!.ActiveState], where).toEqual([
          'active',
          'success',
          'active',
        ]);
        const status = await statusJson(c);
        expectAllOk(status, where);
        const pause = status.phases.find((p) => p.name === 'sandbox-image')!;
        expect(pause.facts.pinned, where).toBe(containerd === '1.7');
        // No race: kubelet's own boot start came first and was refused; node-bootstrap started it
        // only in its kubelet phase, after the gates (the stand-in then found the image pinned).
        expect(await refusedAtBoot(c), where).toBe(true);
        const kubeletPhase = status.phases.find((p) => p.name === 'kubelet')!;
        const forkedAfterGate =
          kubelet!.ExecMainStartTimestampMonotonic +
          monoToWallUs() -
          Date.parse(kubeletPhase.startedAt!) * 1000;
        expect(forkedAfterGate, where).toBeGreaterThan(0);
        toStarted.push(ms(ctrd!.ActiveEnterTimestampMonotonic, kubelet!.ExecMainStartTimestampMonotonic));
        toReady.push(ms(ctrd!.ActiveEnterTimestampMonotonic, kubelet!.ActiveEnterTimestampMonotonic));
        // Where that time goes: systemd's ordering, node-bootstrap's start-up (process start →
        // first phase: status.json's clock is the wall clock), each phase, StartUnit → kubelet forked.
        const wallUs = (monoUs: number) => monoUs + monoToWallUs();
        const at = (iso: string | undefined) => Date.parse(iso ?? '') * 1000;
        const add = (k: string, v: number) => {
          parts[k] = [...(parts[k] ?? []), Math.round(v)];
        };
        add('ordering', ms(ctrd!.ActiveEnterTimestampMonotonic, nb!.ExecMainStartTimestampMonotonic));
        add('start-up', (at(status.startedAt) - wallUs(nb!.ExecMainStartTimestampMonotonic)) / 1000);
        for (const p of status.phases.filter((x) => x.name !== 'kubelet')) add(p.name, p.durationMs ?? 0);
        add('kubelet: StartUnit → forked', forkedAfterGate / 1000);
      });
    };
    const t0 = Date.now();
    for (let i = 0; i < 20; i += 2) await Promise.all([bootOnce(i), bootOnce(i + 1)]);
    const s = stats(toStarted);
    const r = stats(toReady);
    log.push(
      `20 boots in ${((Date.now() - t0) / 1000).toFixed(1)} s (pairs; load average ${loadavg()[0]!.toFixed(1)}): containerd active → kubelet started: median ${s.median} ms, p90 ${s.p90} ms (min ${s.min}, max ${s.max}); → kubelet active (stand-in checked the pin): median ${r.median} ms, p90 ${r.p90} ms`,
      `  boot → running median ${stats(lifecycle.map((l) => l.runningMs)).median} ms, stop median ${stats(lifecycle.map((l) => l.stopMs)).median} ms`,
      `  medians: ${Object.entries(parts)
        .map(([k, v]) => `${k} ${stats(v).median}`)
        .join(', ')} (ms)`,
    );
  });
});
