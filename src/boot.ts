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
  /** A file's modification time (ms), undefined when absent: restart decisions. */
  mtime: (path: string) => number | undefined;
  sandbox: SandboxImageDeps;
  resolvConf: ResolvConfDeps;
  kubelet: KubeletDeps;
}

/** The marker kubelet's drop-in requires: written only once every gate before kubelet passed. */
export const GATE_MARKER = 'gates-passed';

export interface BootOptions {
  /** `run --observe`: verify and report only; no start, restart, import, pull, pin, repair or marker. */
  observe?: boolean;
}

export function bootSequence(cfg: Config, a: BootAdapters, stateDir: string, o: BootOptions = {}): Phase[] {
  const t = cfg.timeouts;
  const runtime: RuntimeFacts = {};
  const observe = o.observe === true;
  const renderedFiles = () => a.containerdConfig().files;
  return [
    containerdUnit(
      { systemd: a.systemd, mtime: a.mtime, configFiles: renderedFiles },
      cfg.containerd.unit,
      t['containerd-unit'],
      observe,
    ),
    containerdSocket(cfg.containerd.socket, t['containerd-socket']),
    cri(a.cri, a.containerd, cfg.containerd.socket, t.cri, runtime),
    sandboxImage(a.sandbox, sandboxSettings(cfg), runtime, t['sandbox-image'], observe),
    resolvConf(a.resolvConf, { ...cfg.kubelet, stateDir }, runtime, t['resolv-conf'], observe),
    kubelet(a.kubelet, cfg.kubelet.unit, join(stateDir, GATE_MARKER), t.kubelet, observe),
  ];
}

/** `run --observe`: the boot sequence, changing nothing. */
export const observeSequence = (cfg: Config, a: BootAdapters, stateDir: string): Phase[] =>
  bootSequence(cfg, a, stateDir, { observe: true });

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
