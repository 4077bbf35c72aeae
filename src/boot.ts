/**
 * THE boot sequence, top to bottom: one line per phase. Each phase lives in its own file under
 * phases/ and receives exactly the adapters it uses.
 */
import type { ContainerdClient } from './adapters/containerd.js';
import type { CriClient } from './adapters/cri.js';
import type { Config } from './config.js';
import { containerdSocket } from './phases/containerd-socket.js';
import { cri, type RuntimeFacts } from './phases/cri.js';
import { type SandboxImageDeps, sandboxImage } from './phases/sandbox-image.js';
import type { Phase } from './runner/phase.js';

export interface BootAdapters {
  cri: CriClient;
  containerd: ContainerdClient;
  sandbox: SandboxImageDeps;
}

export function bootSequence(cfg: Config, a: BootAdapters): Phase[] {
  const t = cfg.timeouts;
  const runtime: RuntimeFacts = {};
  return [
    containerdSocket(cfg.containerd.socket, t['containerd-socket']),
    cri(a.cri, a.containerd, cfg.containerd.socket, t.cri, runtime),
    sandboxImage(a.sandbox, sandboxSettings(cfg), runtime, t['sandbox-image']),
  ];
}

/** `guard`: the same readiness gates, then restore the pinned sandbox image if it is gone or unpinned. */
export function guardSequence(cfg: Config, a: BootAdapters): Phase[] {
  return bootSequence(cfg, a).filter((p) => ['containerd-socket', 'cri', 'sandbox-image'].includes(p.name));
}

function sandboxSettings(cfg: Config) {
  return {
    ...cfg.sandboxImage,
    region: cfg.region ?? cfg.env.awsRegion,
    namespace: cfg.containerd.namespace,
  };
}
