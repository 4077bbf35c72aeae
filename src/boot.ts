/**
 * THE boot sequence, top to bottom: one line per phase. Each phase lives in its own file under
 * phases/ and receives exactly the adapters it uses.
 */
import { join } from 'node:path';
import type { ContainerdClient } from './adapters/containerd.js';
import type { CriClient } from './adapters/cri.js';
import type { Systemd } from './adapters/systemd.js';
import type { Config } from './config.js';
import type { ContainerdConfig } from './core/containerd-config.js';
import { containerdSocket } from './phases/containerd-socket.js';
import { containerdUnit } from './phases/containerd-unit.js';
import { cri, type RuntimeFacts } from './phases/cri.js';
import { type KubeletDeps, kubelet } from './phases/kubelet.js';
import { type ResolvConfDeps, resolvConf } from './phases/resolv-conf.js';
import { type SandboxImageDeps, sandboxImage } from './phases/sandbox-image.js';
import type { Phase } from './runner/phase.js';

export interface BootAdapters {
  cri: CriClient;
  /** containerd's rendered config.toml and imports, read once (throws CONTAINERD_CONFIG_INVALID). */
  containerdConfig: () => ContainerdConfig;
  containerd: ContainerdClient;
  systemd: Systemd;
  sandbox: SandboxImageDeps;
  resolvConf: ResolvConfDeps;
  kubelet: KubeletDeps;
}

/** The marker kubelet's drop-in requires: written only once every gate before kubelet passed. */
export const GATE_MARKER = 'gates-passed';

export function bootSequence(cfg: Config, a: BootAdapters, stateDir: string): Phase[] {
  const t = cfg.timeouts;
  const runtime: RuntimeFacts = {};
  return [
    containerdUnit(a.systemd, cfg.containerd.unit, t['containerd-unit']),
    containerdSocket(cfg.containerd.socket, t['containerd-socket']),
    cri(a.cri, a.containerd, cfg.containerd.socket, t.cri, runtime),
    sandboxImage(a.sandbox, sandboxSettings(cfg), runtime, t['sandbox-image']),
    resolvConf(a.resolvConf, { ...cfg.kubelet, stateDir }, runtime, t['resolv-conf']),
    kubelet(a.kubelet, cfg.kubelet.unit, join(stateDir, GATE_MARKER), t.kubelet),
  ];
}

/** `guard`: the same readiness gates, then restore the pinned sandbox image if it is gone or unpinned. */
export function guardSequence(cfg: Config, a: BootAdapters, stateDir: string): Phase[] {
  const kept = ['containerd-socket', 'cri', 'sandbox-image'];
  return bootSequence(cfg, a, stateDir).filter((p) => kept.includes(p.name));
}

function sandboxSettings(cfg: Config) {
  return {
    ...cfg.sandboxImage,
    region: cfg.region ?? cfg.env.awsRegion,
    namespace: cfg.containerd.namespace,
  };
}
