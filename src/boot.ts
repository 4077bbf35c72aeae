/**
 * THE boot sequence, top to bottom: one line per phase. Each phase lives in its own file under
 * phases/ and receives exactly the adapters it uses.
 */
import type { ContainerdClient } from './adapters/containerd.js';
import type { CriClient } from './adapters/cri.js';
import type { Config } from './config.js';
import { containerdSocket } from './phases/containerd-socket.js';
import { cri, type RuntimeFacts } from './phases/cri.js';
import type { Phase } from './runner/phase.js';

export interface BootAdapters {
  cri: CriClient;
  containerd: ContainerdClient;
}

export function bootSequence(cfg: Config, a: BootAdapters): Phase[] {
  const t = cfg.timeouts;
  const runtime: RuntimeFacts = {};
  return [
    containerdSocket(cfg.containerd.socket, t['containerd-socket']),
    cri(a.cri, a.containerd, cfg.containerd.socket, t.cri, runtime),
  ];
}
