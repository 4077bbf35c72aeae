/** What a containerd version can do: pure, from the version string its Version service reports. */

export interface SemVer {
  major: number;
  minor: number;
  patch: number;
}

/** Loose: Debian reports e.g. "1.6.20~ds1", upstream "v1.7.24". */
export function parseVersion(v: string): SemVer | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) } : undefined;
}

const atLeast = (v: SemVer, major: number, minor: number, patch: number): boolean =>
  v.major !== major ? v.major > major : v.minor !== minor ? v.minor > minor : v.patch >= patch;

export interface ContainerdCapabilities {
  version: string;
  /** CRI honours io.cri-containerd.pinned for the configured sandbox image (1.7.3+). */
  pinsSandboxImage: boolean;
  /** CRI honours io.cri-containerd.pinned for any labelled image and reports ImageStatus.pinned (1.7.10+). */
  pinsLabelledImages: boolean;
  /** 1.7.20+ no longer falls back to the host's resolv.conf when kubelet hands it an empty one. */
  noResolvConfFallback: boolean;
}

export function capabilities(version: string): ContainerdCapabilities {
  const v = parseVersion(version);
  const at = (a: number, b: number, c: number): boolean => (v ? atLeast(v, a, b, c) : false);
  return {
    version,
    pinsSandboxImage: at(1, 7, 3),
    pinsLabelledImages: at(1, 7, 10),
    noResolvConfFallback: at(1, 7, 20),
  };
}
