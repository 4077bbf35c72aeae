/**
 * The local testbed: a real containerd, a real TLS registry serving the pause image under its ECR
 * name, and the ECR API / IMDS emulators, in one private folder with private sockets and ports.
 * Every part is optional; several testbeds run side by side.
 *
 *   const tb = await startTestbed({ containerd: { version: '1.7' } });
 *   spawn('node', [bin, 'run', '--config', tb.configFile], { env: tb.env });
 *   await tb.stop();
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { type Containerd, type ContainerdOptions, startContainerd } from './containerd.js';
import { type EcrApi, startEcrApi } from './ecr-api.js';
import { killShims } from './host.js';
import { type Imds, startImds } from './imds.js';
import {
  ECR_HOST,
  exportPauseArchive,
  PAUSE_IMAGE,
  PAUSE_REPO,
  PAUSE_TAG,
  pushImage,
} from './pause-image.js';
import { createPki, type Pki } from './pki.js';
import { ecrStylePassword, type Registry, startRegistry } from './registry.js';

export { ECR_HOST, PAUSE_IMAGE } from './pause-image.js';

export interface TestbedOptions {
  /** Default: a fresh /tmp/nbtb-XXXXXX (short, for the socket path). Removed by stop(). */
  dir?: string;
  /** Region the IMDS emulator reports (default us-west-2, whose ECR host the registry stands in for). */
  region?: string;
  /** false: no containerd. Default: 1.6 with CRI. */
  containerd?: false | ContainerdOptions;
  /** Start the registry (default true). */
  registry?: boolean;
  /** repo:tag refs given the pause image (default [`eks/pause:3.10`]); [] pushes nothing. */
  push?: string[];
  /** repo:tag refs given another image (own image ID, never pinned as the sandbox image). */
  pushOther?: string[];
  /** More registry hosts that containerd pulls from the local registry (the ECR host always is). */
  registryHosts?: string[];
  /** Export the pause image as a docker-archive at `<dir>/pause.tar` (sandboxImage.archive). */
  archive?: boolean;
  /** The ECR API emulator (default true). */
  ecr?: boolean;
  /** The IMDS emulator (default true). */
  imds?: boolean | { accountId?: string; instanceId?: string; roleName?: string };
  /** Deep-merged into the generated config.yaml. */
  config?: Record<string, unknown>;
}

export interface Testbed {
  dir: string;
  pki?: Pki;
  registry?: Registry;
  containerd?: Containerd;
  ecr?: EcrApi;
  imds?: Imds;
  /** The image the product is expected to resolve and pin (the ECR name, served locally). */
  sandboxImage: string;
  /** `<dir>/pause.tar` (exists only with `archive: true`). */
  archiveFile: string;
  /** `<dir>/resolv.conf` (kubelet.resolvConf in configFile). */
  resolvConf: string;
  /** The whole environment for a node-bootstrap child process (no inherited AWS_* variables). */
  env: Record<string, string>;
  /** A node-bootstrap config.yaml pointing at this testbed. */
  configFile: string;
  /** Make containerd pull `host` from the local registry too (read at every pull). */
  redirectRegistry(host: string): Promise<void>;
  stop(): Promise<void>;
}

/** systemd's default PATH for services. */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Nothing listens on the discard port: a disabled emulator fails fast with ECONNREFUSED. */
const NOWHERE = 'http://127.0.0.1:9';

/** Safety net: daemons must not outlive a crashed test process. */
const live = new Set<() => void>();
process.once('exit', () => {
  for (const kill of live) kill();
});

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    const isObj = (x: unknown): x is Record<string, unknown> =>
      typeof x === 'object' && x !== null && !Array.isArray(x);
    out[k] = isObj(b) && isObj(v) ? merge(b, v) : v;
  }
  return out;
}

export async function startTestbed(opts: TestbedOptions = {}): Promise<Testbed> {
  const dir = opts.dir ?? (await mkdtemp('/tmp/nbtb-'));
  await mkdir(dir, { recursive: true });
  const stops: (() => Promise<unknown>)[] = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    stops.length = 0;
  };
  try {
    const want = { registry: opts.registry ?? true, ecr: opts.ecr ?? true, imds: opts.imds ?? true };
    const pki = want.registry ? await createPki(join(dir, 'pki')) : undefined;

    const registryUp = (async () => {
      if (!pki) return undefined;
      const registry = await startRegistry(join(dir, 'registry'), pki);
      stops.push(() => registry.stop());
      const refs = [
        ...(opts.push ?? [`${PAUSE_REPO}:${PAUSE_TAG}`]).map((ref) => [ref, 'pause'] as const),
        ...(opts.pushOther ?? []).map((ref) => [ref, 'other'] as const),
      ];
      for (const [ref, variant] of refs) {
        const [repo, tag] = ref.split(':') as [string, string | undefined];
        await pushImage(registry, repo, tag ?? 'latest', variant);
      }
      return registry;
    })();

    const containerdUp = (async () => {
      if (opts.containerd === false) return undefined;
      const c = await startContainerd(join(dir, 'containerd'), opts.containerd ?? {});
      const kill = () => {
        const pid = c.pid();
        if (pid) process.kill(pid, 'SIGKILL');
        killShims(c.socket);
      };
      live.add(kill);
      stops.push(async () => {
        live.delete(kill);
        await c.cleanup();
      });
      return c;
    })();

    const awsUp = (async () => {
      const imdsOpts = typeof want.imds === 'object' ? want.imds : {};
      const imds = want.imds
        ? await startImds({ region: opts.region ?? 'us-west-2', ...imdsOpts })
        : undefined;
      if (imds) stops.push(() => imds.close());
      const password = (await registryUp.catch(() => undefined))?.password ?? ecrStylePassword();
      const ecr = want.ecr
        ? await startEcrApi({ password, expectedAccessKeyId: imds?.credentials.accessKeyId })
        : undefined;
      if (ecr) stops.push(() => ecr.close());
      return { imds, ecr };
    })();

    // allSettled: a failed part must not leave the others starting unnoticed (stopAll needs them).
    const settled = await Promise.allSettled([registryUp, containerdUp, awsUp]);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
    const [registry, containerd, { imds, ecr }] = await Promise.all([registryUp, containerdUp, awsUp]);

    const redirectRegistry = async (host: string) => {
      if (containerd && registry)
        await containerd.trustRegistry(host, `https://${registry.host}`, registry.caFile);
    };
    for (const host of [ECR_HOST, registry?.host ?? '', ...(opts.registryHosts ?? [])])
      if (host) await redirectRegistry(host);

    const archiveFile = join(dir, 'pause.tar');
    if (opts.archive) await exportPauseArchive(archiveFile);

    const resolvConf = join(dir, 'resolv.conf');
    await writeFile(resolvConf, 'nameserver 10.0.0.2\nsearch us-west-2.compute.internal\n');
    const config: Record<string, unknown> = {
      ...(containerd
        ? { containerd: { socket: containerd.socket, config: containerd.configFile, namespace: 'k8s.io' } }
        : {}),
      kubelet: { resolvConf },
      sandboxImage: { archive: archiveFile },
      // Inside the testbed, and not created: nothing lands in the host's /var/log or node_exporter's
      // directory; a test that wants the copies and metrics creates these two.
      report: { logDir: join(dir, 'log') },
      metrics: { textfileDir: join(dir, 'textfile') },
    };
    const configFile = join(dir, 'config.yaml');
    await writeFile(configFile, stringify(merge(config, opts.config ?? {})));

    const env: Record<string, string> = {
      PATH: SYSTEM_PATH.includes(dirname(process.execPath))
        ? SYSTEM_PATH
        : `${SYSTEM_PATH}:${dirname(process.execPath)}`,
      AWS_ENDPOINT_URL_ECR: ecr?.url ?? NOWHERE,
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds?.url ?? NOWHERE,
      // Nonexistent: no profile, region or key of the machine running the tests leaks in.
      AWS_CONFIG_FILE: join(dir, 'no-aws', 'config'),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws', 'credentials'),
    };

    return {
      dir,
      pki,
      registry,
      containerd,
      ecr,
      imds,
      sandboxImage: PAUSE_IMAGE,
      archiveFile,
      resolvConf,
      env,
      configFile,
      redirectRegistry,
      async stop() {
        await stopAll();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
