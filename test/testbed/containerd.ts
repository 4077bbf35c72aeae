/**
 * A real containerd (1.6 from Debian 12, or 1.7 from .cache/containerd-1.7) as a plain background
 * process with its own config: root, state, socket, runc state and registry trust all inside the
 * testbed folder, so several testbeds run side by side.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createContainerdClient } from '../../src/adapters/containerd.js';
import { createCriClient } from '../../src/adapters/cri.js';
import { killShims, removeTasks, snapshotterFor, unmountUnder } from './host.js';
import { PAUSE_IMAGE } from './pause-image.js';
import { CACHE_DIR, isRunning, spawnDaemon, stopProcess, waitUntil } from './proc.js';

export type ContainerdVersion = '1.6' | '1.7';
export const CRI_PLUGIN = 'io.containerd.grpc.v1.cri';
const BIN_DIR: Record<ContainerdVersion, string> = {
  '1.6': '/usr/bin',
  '1.7': join(CACHE_DIR, 'containerd-1.7/usr/bin'),
};

export interface ContainerdOptions {
  version?: ContainerdVersion;
  /** Load the CRI plugin (default true); false gives 12 UNIMPLEMENTED on CRI calls. */
  cri?: boolean;
  sandboxImage?: string;
  /** Default: overlayfs when the testbed folder supports it, else native. */
  snapshotter?: 'overlayfs' | 'native';
  /** Spawn only after this many ms; startContainerd then returns at once (see ready()). */
  startDelayMs?: number;
}

export interface Containerd {
  version: ContainerdVersion;
  /** Unix socket path (no `unix:` prefix). */
  socket: string;
  dir: string;
  configFile: string;
  logFile: string;
  snapshotter: string;
  /** `<dir>/certs.d`: containerd's registry config_path. */
  certsDir: string;
  pid(): number | undefined;
  /** Start (again); with delayMs the spawn happens later and this returns at once. */
  start(opts?: { delayMs?: number }): Promise<void>;
  /** Resolves when the socket answers (and CRI reports RuntimeReady when enabled). */
  ready(timeoutMs?: number): Promise<void>;
  /** SIGTERM and wait. Pod sandboxes and their shims keep running (as on a real node). */
  stop(): Promise<void>;
  /** SIGKILL: in-flight calls fail, the stale socket file stays. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /**
   * Make containerd pull `host` (e.g. an ECR host) from `server` (https://127.0.0.1:PORT), trusting
   * `caFile`. Read at every pull: works while containerd runs.
   */
  trustRegistry(host: string, server: string, caFile: string): Promise<void>;
  /** Remove every task (pod sandbox) and its shim, stop containerd, unmount what it mounted. */
  cleanup(): Promise<void>;
  /** The last `bytes` of containerd's log (for failure messages). */
  logTail(bytes?: number): string;
}

function configToml(
  dir: string,
  socket: string,
  o: Required<Omit<ContainerdOptions, 'startDelayMs'>>,
): string {
  const cri = `plugins."${CRI_PLUGIN}"`;
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = [${o.cri ? '' : `"${CRI_PLUGIN}"`}]

[grpc]
  address = "${socket}"

[${cri}]
  sandbox_image = "${o.sandboxImage}"
  restrict_oom_score_adj = true
[${cri}.containerd]
  snapshotter = "${o.snapshotter}"
  default_runtime_name = "runc"
[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[${cri}.containerd.runtimes.runc.options]
  Root = "${dir}/runc"
[${cri}.registry]
  config_path = "${dir}/certs.d"
`;
}

export async function startContainerd(dir: string, opts: ContainerdOptions = {}): Promise<Containerd> {
  await mkdir(join(dir, 'certs.d'), { recursive: true });
  const version = opts.version ?? '1.6';
  const binDir = BIN_DIR[version];
  if (!existsSync(join(binDir, 'containerd')))
    throw new Error(`testbed: no containerd ${version} in ${binDir}: run scripts/setup.sh`);
  const socket = join(dir, 'c.sock');
  if (Buffer.byteLength(`${socket}.ttrpc`) > 107) throw new Error(`testbed: socket path too long: ${socket}`);
  const o = {
    version,
    cri: opts.cri ?? true,
    sandboxImage: opts.sandboxImage ?? PAUSE_IMAGE,
    snapshotter: opts.snapshotter ?? snapshotterFor(dir),
  };
  const configFile = join(dir, 'config.toml');
  await writeFile(configFile, configToml(dir, socket, o));
  const logFile = join(dir, 'containerd.log');
  // The shim (containerd-shim-runc-v2) is looked up in PATH: it must match the daemon's version.
  const env = { ...process.env, PATH: `${binDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
  let pid: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let exitCode: number | null = null;

  const spawnNow = () => {
    timer = undefined;
    const child = spawnDaemon(join(binDir, 'containerd'), ['--config', configFile], logFile, env);
    pid = child.pid;
    exitCode = null;
    child.on('exit', (code, sig) => {
      if (child.pid === pid) exitCode = code ?? (sig ? 128 : 1);
    });
  };

  const tb: Containerd = {
    version,
    socket,
    dir,
    configFile,
    logFile,
    snapshotter: o.snapshotter,
    certsDir: join(dir, 'certs.d'),
    pid: () => (isRunning(pid) ? pid : undefined),
    async start(s = {}) {
      if (isRunning(pid) || timer) return;
      exitCode = null;
      if (s.delayMs) timer = setTimeout(spawnNow, s.delayMs);
      else {
        spawnNow();
        await tb.ready();
      }
    },
    async ready(timeoutMs = 15_000) {
      await waitUntil(`containerd ${version} socket ${socket}`, () => isRunning(pid) && existsSync(socket), {
        timeoutMs,
        failIf: () => (exitCode === null ? undefined : `containerd exited ${exitCode}: ${tb.logTail()}`),
      });
      await waitUntil(`containerd ${version} to answer`, () => answers(socket, o.cri), {
        timeoutMs,
        failIf: () => (exitCode === null ? undefined : `containerd exited ${exitCode}: ${tb.logTail()}`),
      });
    },
    async stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await stopProcess(pid, 10_000);
    },
    async kill() {
      await stopProcess(pid, 0);
    },
    async restart() {
      await tb.stop();
      await tb.start();
    },
    async trustRegistry(host, server, caFile) {
      const hostDir = join(dir, 'certs.d', host);
      await mkdir(hostDir, { recursive: true });
      // Both the top-level server/ca and the [host] table: without [host] the file is ignored,
      // without the top-level ca a missing tag shows as an x509 error.
      const toml = `server = "${server}"\nca = "${caFile}"\n\n[host."${server}"]\n  capabilities = ["pull", "resolve"]\n  ca = "${caFile}"\n`;
      await writeFile(join(hostDir, 'hosts.toml'), toml);
    },
    async cleanup() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (isRunning(pid)) await removeTasks(join(binDir, 'ctr'), socket).catch(() => {});
      await tb.stop();
      killShims(socket);
      unmountUnder(dir);
    },
    logTail(bytes = 800) {
      try {
        return readFileSync(logFile, 'utf8').slice(-bytes);
      } catch {
        return '';
      }
    },
  };
  if (opts.startDelayMs) await tb.start({ delayMs: opts.startDelayMs });
  else await tb.start();
  return tb;
}

/** One readiness probe: CRI RuntimeReady when CRI is on, else the version service. */
async function answers(socket: string, cri: boolean): Promise<boolean> {
  const signal = AbortSignal.timeout(1000);
  if (!cri) {
    const c = createContainerdClient(socket, { waitForReady: false });
    try {
      return Boolean((await c.version(signal)).version);
    } finally {
      c.close();
    }
  }
  const c = createCriClient(socket, { waitForReady: false });
  try {
    const st = await c.status(signal);
    return st.conditions.some((x) => x.type === 'RuntimeReady' && x.status);
  } finally {
    c.close();
  }
}
