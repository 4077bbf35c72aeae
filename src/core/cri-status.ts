/** Verdict on a CRI Status answer: pure. Never gates on NetworkReady (the CNI only comes after kubelet). */

export interface CriCondition {
  type: string;
  status: boolean;
  reason?: string;
  message?: string;
}

export interface CriVerdict {
  ready: boolean;
  reason: string;
  networkReady: boolean;
  /** containerd's own configured sandbox image, from Status{verbose} info.config, when it says. */
  sandboxImage?: string;
  /** The CRI plugin's snapshotter (info.config.containerd.snapshotter). */
  snapshotter?: string;
}

export function criVerdict(
  conditions: readonly CriCondition[],
  info: Record<string, string> = {},
): CriVerdict {
  const runtime = conditions.find((c) => c.type === 'RuntimeReady');
  const network = conditions.find((c) => c.type === 'NetworkReady');
  let sandboxImage: string | undefined;
  let snapshotter: string | undefined;
  try {
    const cfg = info.config
      ? (JSON.parse(info.config) as { sandboxImage?: unknown; containerd?: { snapshotter?: unknown } })
      : undefined;
    if (typeof cfg?.sandboxImage === 'string' && cfg.sandboxImage) sandboxImage = cfg.sandboxImage;
    if (typeof cfg?.containerd?.snapshotter === 'string' && cfg.containerd.snapshotter)
      snapshotter = cfg.containerd.snapshotter;
  } catch {
    // verbose info is best-effort; its absence changes no verdict
  }
  const reason = !runtime
    ? 'CRI Status reports no RuntimeReady condition'
    : runtime.status
      ? 'RuntimeReady'
      : `RuntimeReady=false: ${[runtime.reason, runtime.message].filter(Boolean).join(': ') || 'no reason given'}`;
  return {
    ready: runtime?.status === true,
    reason,
    networkReady: network?.status === true,
    sandboxImage,
    snapshotter,
  };
}
