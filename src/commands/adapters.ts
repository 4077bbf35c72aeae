/** Builds the node's adapters from the config: the only place clients are constructed. */
import { existsSync } from 'node:fs';
import type { BootAdapters } from '../boot.js';
import type { Config } from '../config.js';

export async function createAdapters(
  cfg: Config,
  stateDir: string,
): Promise<BootAdapters & { close(): void }> {
  const [
    { createCriClient },
    { createContainerdClient },
    { createEcr },
    { createImds },
    { createTokenCache },
    ctr,
  ] = await Promise.all([
    import('../adapters/cri.js'),
    import('../adapters/containerd.js'),
    import('../adapters/ecr.js'),
    import('../adapters/imds.js'),
    import('../adapters/token-cache.js'),
    import('../adapters/ctr.js'),
  ]);
  const socket = cfg.containerd.socket;
  const cri = createCriClient(socket);
  const containerd = createContainerdClient(socket);
  const imds = createImds({ endpoint: cfg.env.imdsEndpoint, disabled: cfg.env.imdsDisabled });
  const ecrClients = new Map<string, ReturnType<typeof createEcr>>();
  return {
    cri,
    containerd,
    sandbox: {
      cri,
      containerd,
      imdsRegion: (signal) => imds.region(signal),
      ecr: (region) => {
        const c = ecrClients.get(region) ?? createEcr({ region, imds });
        ecrClients.set(region, c);
        return c;
      },
      tokens: createTokenCache({ dir: stateDir }),
      importArchive: (file, snapshotter, signal) =>
        ctr.importArchive(file, { socket, namespace: cfg.containerd.namespace, snapshotter }, signal),
      archiveExists: (file) => existsSync(file),
    },
    close() {
      cri.close();
      containerd.close();
    },
  };
}
