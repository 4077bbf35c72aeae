/**
 * The testbed itself, against real containerd 1.6 and 1.7: private socket, the ECR-named pause
 * image served by the local TLS registry, registry auth, pinning, registry outage, cleanup.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContainerdClient, PINNED_LABEL } from '../../src/adapters/containerd.js';
import { createCriClient } from '../../src/adapters/cri.js';
import { loadConfig } from '../../src/config.js';
import { ECR_HOST, PAUSE_IMAGE, startTestbed, type Testbed } from '../testbed/index.js';

const deadline = (ms = 5_000) => AbortSignal.timeout(ms);

/** The rejection of `p` as a grpc ServiceError (fails the test if `p` resolves). */
async function grpcError(p: Promise<unknown>): Promise<ServiceError> {
  const err = await p.then(
    () => expect.fail('expected the call to fail'),
    (e: unknown) => e as ServiceError,
  );
  expect(err.code, String(err)).toBeTypeOf('number');
  return err;
}

/** Processes still serving `socket` (shims) and mounts under `dir`. */
function leftovers(socket: string, dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv.includes(socket)) found.push(`pid ${pid}: ${argv.join(' ')}`);
    } catch {}
  }
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n'))
    if (line.split(' ')[4]?.startsWith(dir)) found.push(`mount ${line}`);
  return found;
}

describe.each(['1.6', '1.7'] as const)('testbed with containerd %s', (version) => {
  const APP = `${ECR_HOST}/testbed/app:1.0`;
  let tb: Testbed;
  let cri: ReturnType<typeof createCriClient>;
  let ctrd: ReturnType<typeof createContainerdClient>;

  beforeAll(async () => {
    tb = await startTestbed({ containerd: { version }, pushOther: ['testbed/app:1.0'] });
    cri = createCriClient(tb.containerd!.socket);
    ctrd = createContainerdClient(tb.containerd!.socket);
  });
  /** Poll ImageStatus until pinned or `ms` passed; the last answer. */
  async function pinnedWithin(ref: string, ms: number): Promise<boolean | undefined> {
    const end = Date.now() + ms;
    for (;;) {
      const pinned = (await cri.imageStatus(ref, deadline()))?.pinned;
      if (pinned || Date.now() > end) return pinned;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  afterAll(async () => {
    cri?.close();
    ctrd?.close();
    await tb?.stop();
  });

  it('answers CRI Version and Status on its private socket', async () => {
    const v = await cri.version(deadline());
    expect(v.runtimeName).toBe('containerd');
    expect(v.runtimeVersion).toMatch(new RegExp(`^v?${version.replace('.', '\\.')}\\.\\d+`));
    expect((await ctrd.version(deadline())).version).toBe(v.runtimeVersion);
    const st = await cri.status(deadline(), true);
    expect(st.conditions).toContainEqual(expect.objectContaining({ type: 'RuntimeReady', status: true }));
    expect(JSON.parse(st.info.config ?? '{}').sandboxImage).toBe(PAUSE_IMAGE);
  });

  it('gives a node-bootstrap config and a clean environment', () => {
    const cfg = loadConfig({ file: tb.configFile, env: tb.env });
    expect(cfg.containerd.socket).toBe(tb.containerd!.socket);
    expect(cfg.kubelet.resolvConf).toBe(tb.resolvConf);
    expect(tb.env.AWS_ENDPOINT_URL_ECR).toBe(tb.ecr!.url);
    expect(tb.env.AWS_EC2_METADATA_SERVICE_ENDPOINT).toBe(tb.imds!.url);
    expect(
      Object.keys(tb.env).filter((k) => /^AWS_(REGION|DEFAULT_REGION|ACCESS_KEY_ID|PROFILE)$/.test(k)),
    ).toEqual([]);
    expect(existsSync(tb.env.AWS_CONFIG_FILE!)).toBe(false);
  });

  it('refuses a wrong password with 401 Unauthorized', async () => {
    const wrong = { username: 'AWS', password: `x${tb.registry!.password.slice(1)}` };
    const err = await grpcError(cri.pullImage(PAUSE_IMAGE, wrong, deadline()));
    expect(err.code).toBe(2);
    expect(err.details).toMatch(/401 Unauthorized$/);
  });

  it('pulls the ECR-named pause image from the local registry with the right password', async () => {
    const auth = { username: tb.registry!.username, password: tb.registry!.password };
    const ref = await cri.pullImage(PAUSE_IMAGE, auth, deadline());
    expect(ref).toMatch(/^sha256:[0-9a-f]{64}$/);
    const img = await cri.imageStatus(PAUSE_IMAGE, deadline());
    expect(img).toMatchObject({ id: ref, repoTags: [PAUSE_IMAGE] });
  });

  it(`pins through a containerd label: CRI pinned is ${version === '1.7'} on ${version}`, async () => {
    // Not the sandbox image: 1.7 pins that one by itself.
    await cri.pullImage(APP, { username: 'AWS', password: tb.registry!.password }, deadline());
    expect((await cri.imageStatus(APP, deadline()))?.pinned, 'pinned before labelling').toBe(false);
    const img = await ctrd.setImageLabel(APP, PINNED_LABEL, 'pinned', 'k8s.io', deadline());
    expect(img.labels[PINNED_LABEL]).toBe('pinned');
    expect(img.target?.digest).toMatch(/^sha256:/);
    // CRI's image cache follows containerd's image events: give it a moment (it is usually at once).
    const pinned = await pinnedWithin(APP, version === '1.7' ? 2_000 : 300);
    expect(pinned, 'pinned after labelling').toBe(version === '1.7');
  });

  it('reports connection refused while the registry is down, and recovers after start()', async () => {
    const auth = { username: 'AWS', password: tb.registry!.password };
    await tb.registry!.stop();
    const err = await grpcError(cri.pullImage(`${ECR_HOST}/testbed/app:1.0`, auth, deadline()));
    expect(err.code).toBe(2);
    // A new connection is refused; containerd may first try an idle keep-alive connection from the
    // previous pull, which the dying registry's kernel resets (seen on a fresh CI machine).
    expect(err.details).toMatch(/connect: connection refused$|read: connection reset by peer$/);
    await tb.registry!.start();
    await expect(cri.pullImage(APP, auth, deadline())).resolves.toMatch(/^sha256:/);
  });

  it('runs a host-network pod sandbox; stop() removes it, its shim and its mounts', async () => {
    const id = await cri.runPodSandbox(
      { name: 'probe', uid: `uid-${version}`, namespace: 'testbed' },
      deadline(),
    );
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const { socket } = tb.containerd!;
    expect(leftovers(socket, tb.dir).length).toBeGreaterThan(0);
    await tb.stop();
    expect(leftovers(socket, tb.dir)).toEqual([]);
    expect(existsSync(tb.dir)).toBe(false);
  });
});

describe('testbed with the CRI plugin disabled', () => {
  let tb: Testbed;
  beforeAll(async () => {
    tb = await startTestbed({ containerd: { cri: false }, registry: false, ecr: false, imds: false });
  });
  afterAll(() => tb?.stop());

  it('answers the containerd API but CRI with 12 UNIMPLEMENTED; kill -9 gives 14 UNAVAILABLE', async () => {
    const cri = createCriClient(tb.containerd!.socket, { waitForReady: false });
    const ctrd = createContainerdClient(tb.containerd!.socket, { waitForReady: false });
    const patient = createContainerdClient(tb.containerd!.socket); // waitForReady: rides out the restart
    try {
      expect((await ctrd.version(deadline())).version).toMatch(/^1\.6\./);
      const err = await grpcError(cri.version(deadline()));
      expect(err.code).toBe(12);
      expect(err.details).toMatch(/unknown service runtime\.v1\.RuntimeService/);
      await tb.containerd!.kill();
      expect((await grpcError(ctrd.version(deadline()))).code).toBe(14);
      await tb.containerd!.start();
      expect((await patient.version(deadline())).version).toMatch(/^1\.6\./);
    } finally {
      cri.close();
      ctrd.close();
      patient.close();
    }
  });
});
