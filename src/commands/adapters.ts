/** Builds the node's adapters from the config: the only place clients are constructed. */
import { existsSync, statSync } from 'node:fs';
import { createContainerdClient } from '../adapters/containerd.js';
import { createCriClient } from '../adapters/cri.js';
import { importArchive } from '../adapters/ctr.js';
import { createEcr } from '../adapters/ecr.js';
import { createImds } from '../adapters/imds.js';
import { unitTail } from '../adapters/journal.js';
import { createNodeFiles, removeFile, writeFileAtomic } from '../adapters/node-files.js';
import { createSystemd } from '../adapters/systemd.js';
import { createTokenCache } from '../adapters/token-cache.js';
import type { BootAdapters } from '../boot.js';
import type { Config } from '../config.js';
import { type ContainerdConfig, readContainerdConfig } from '../core/containerd-config.js';
import type { FileReader } from '../core/file-reader.js';
import { discoverKubelet, KUBELET_ENV_FILE } from '../core/kubelet-settings.js';
import { listSetting, loadUnit } from '../core/unit-files.js';
import type { PullDeps } from '../phases/pull.js';
import { type NetworkFacts, readNetwork } from './network.js';

/** A file's modification time (ms since the epoch), undefined when it cannot be read. */
export function mtime(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * What a kubelet restart applies: its config file and config drop-ins, the EnvironmentFile= files
 * of its unit (its flags; node-bootstrap's own resolv.conf repair file among them), and the EKS
 * flags file. Unreadable config: only the environment files (the resolv-conf phase reports it).
 */
function kubeletConfigFiles(files: FileReader, cfg: Config): string[] {
  const env = listSetting(loadUnit(files, cfg.kubelet.unit), 'Service', 'EnvironmentFile').map((d) =>
    d.value.replace(/^-/, ''),
  );
  let config: string[] = [];
  try {
    const k = discoverKubelet(files, {
      ...(cfg.kubelet.config ? { kubeletConfig: cfg.kubelet.config } : {}),
      unit: cfg.kubelet.unit,
    });
    config = [...(k.configFile ? [k.configFile] : []), ...k.configDropIns];
  } catch {
    // KUBELET_CONFIG_INVALID: the resolv-conf phase names it
  }
  return [...new Set([...config, ...env, KUBELET_ENV_FILE])];
}

/**
 * The socket: containerd.socket when config.yaml sets it, else the [grpc] address of containerd's
 * rendered config (a config that does not parse keeps the default here; the phase reading it reports it).
 */
export function withRenderedSocket(cfg: Config): Config {
  if (cfg.containerd.socketSet) return cfg;
  try {
    const address = readContainerdConfig(createNodeFiles('/'), cfg.containerd.config).address.value;
    return address.startsWith('/') ? { ...cfg, containerd: { ...cfg.containerd, socket: address } } : cfg;
  } catch {
    return cfg;
  }
}

/** The node's network settings, read once on first need (or started early by `run`). */
function lazyNetwork(cfg: Config, imds: ReturnType<typeof createImds>): () => Promise<NetworkFacts> {
  let p: Promise<NetworkFacts> | undefined;
  return () => {
    p ??= readNetwork(cfg, imds, AbortSignal.timeout(5_000)).catch((err: unknown) =>
      readNetwork({ ...cfg, nodeConfig: { imds: false } }, undefined, AbortSignal.timeout(1_000)).then(
        (n) => ({
          ...n,
          problems: [...n.problems, `NodeConfig not read: ${(err as Error).message}`],
        }),
      ),
    );
    return p;
  };
}

export function createAdapters(
  cfg: Config,
  stateDir: string,
): BootAdapters & { network: () => Promise<NetworkFacts>; close(): void } {
  const socket = cfg.containerd.socket;
  const cri = createCriClient(socket);
  const containerd = createContainerdClient(socket);
  const imds = createImds({ endpoint: cfg.env.imdsEndpoint, disabled: cfg.env.imdsDisabled });
  const network = lazyNetwork(cfg, imds);
  const proxy = async () => (await network()).settings;
  const systemd = createSystemd();
  const ecrClients = new Map<string, ReturnType<typeof createEcr>>();
  const files = createNodeFiles('/');
  let rendered: ContainerdConfig | undefined;
  const containerdConfig = (): ContainerdConfig => {
    rendered ??= readContainerdConfig(files, cfg.containerd.config);
    return rendered;
  };
  return {
    cri,
    containerd,
    containerdConfig,
    systemd,
    resolvConf: {
      files,
      write: writeFileAtomic,
      remove: removeFile,
      reload: (signal) => systemd.reload(signal),
    },
    mtime,
    kubelet: {
      systemd,
      tail: unitTail,
      mtime,
      configFiles: () => kubeletConfigFiles(files, cfg),
    },
    network,
    sandbox: {
      cri,
      containerd,
      imdsRegion: (signal) => imds.region(signal),
      ecr: (region) => {
        const c = ecrClients.get(region) ?? createEcr({ region, imds, proxy });
        ecrClients.set(region, c);
        return c;
      },
      tokens: createTokenCache({ dir: stateDir }),
      importArchive: (file, snapshotter, signal) =>
        importArchive(file, { socket, namespace: cfg.containerd.namespace, snapshotter }, signal),
      archiveExists: (file) => existsSync(file),
      containerdConfig,
    },
    close() {
      cri.close();
      containerd.close();
      systemd.close();
    },
  };
}

/** What pulling images needs (prefetch): CRI, ECR per region, the token cache. No D-Bus. */
export function createPullAdapters(cfg: Config, stateDir: string): PullDeps & { close(): void } {
  const cri = createCriClient(cfg.containerd.socket);
  const imds = createImds({ endpoint: cfg.env.imdsEndpoint, disabled: cfg.env.imdsDisabled });
  const network = lazyNetwork(cfg, imds);
  const proxy = async () => (await network()).settings;
  const ecrClients = new Map<string, ReturnType<typeof createEcr>>();
  return {
    cri,
    ecr: (region) => {
      const c = ecrClients.get(region) ?? createEcr({ region, imds, proxy });
      ecrClients.set(region, c);
      return c;
    },
    tokens: createTokenCache({ dir: stateDir }),
    close: () => cri.close(),
  };
}
