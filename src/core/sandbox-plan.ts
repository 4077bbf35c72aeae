/**
 * Which sandbox image to ensure, and from where: pure decisions of the sandbox-image phase.
 * The target is the name kubelet and containerd will ask for; sources are tried in order.
 *
 * sandboxImage.source:
 * - `auto` (default): the reference containerd is configured with; when it is missing, the archive
 *   baked into the node image, and only when neither serves, the regional registry (then fallbacks);
 * - `registry`: the classic regional pull, then fallbacks, then the archive as the last resort;
 * - `archive`: the archive only (no registry, no AWS call).
 */
import type { SandboxSource } from '../config.js';
import { BootError } from '../errors.js';
import type { Found } from './containerd-config.js';
import { normalizeRef, parseImageRef } from './image-ref.js';
import { parseEcrHost } from './sandbox-image.js';

export type Source =
  | { kind: 'registry'; image: string; ecr?: { account: string; region: string } }
  | { kind: 'archive'; path: string };

export interface SandboxPlan {
  target: string;
  sources: Source[];
  /** The archive this plan uses (the configured one, else the default for the target). */
  archive: string;
  /** A difference with containerd's own sandbox_image that is worth a warning but not a stop. */
  warning?: string;
}

export interface PlanInput {
  /** The node's region. */
  region: string;
  /** The image node-bootstrap resolved for this region, or sandboxImage.image when set. */
  wanted: string;
  /** True when `wanted` came from sandboxImage.image (an explicit choice, not the region table). */
  explicit: boolean;
  /** containerd's configured sandbox reference (rendered config.toml, else CRI Status verbose). */
  configured?: string;
  fallbacks: readonly string[];
  /** sandboxImage.archive when set; else the default for the target (defaultArchive). */
  archive?: string;
  /** Default `registry` (the classic flow) for callers that only want the target. */
  source?: SandboxSource;
  /** Whether a file exists (auto leaves out an archive that is not there). Default: assume it does. */
  exists?: (path: string) => boolean;
}

/** The archive EKS AMIs bake since late 2024, next to a config.toml naming localhost/kubernetes/pause. */
export const EKS_PAUSE_ARCHIVE = '/etc/eks/pause.tar';
export const DEFAULT_PAUSE_ARCHIVE = '/etc/node-bootstrap/pause.tar';

/** A name no registry serves: baked into the image (imported from an archive), never pulled. */
export const isLocalOnly = (ref: string): boolean => parseImageRef(ref)?.host === 'localhost';

/** /etc/eks/pause.tar for the EKS AMIs' baked name (localhost/kubernetes/pause…), else node-bootstrap's own. */
export function defaultArchive(target: string): string {
  const r = parseImageRef(target);
  return r?.host === 'localhost' && r.repository === 'kubernetes/pause'
    ? EKS_PAUSE_ARCHIVE
    : DEFAULT_PAUSE_ARCHIVE;
}

export function registrySource(image: string): Source {
  const host = parseImageRef(image)?.host;
  const ecr = host ? parseEcrHost(host) : undefined;
  return { kind: 'registry', image, ...(ecr ? { ecr: { account: ecr.account, region: ecr.region } } : {}) };
}

/**
 * containerd's sandbox reference from its two witnesses: the rendered config file (what containerd
 * reads at its next start) and CRI Status (what the running containerd uses now). When they differ,
 * containerd runs on an older config: the running daemon's reference is what pods use now.
 */
export function configuredSandbox(
  file: Found<string> | undefined,
  cri: string | undefined,
): { image?: string; from?: string; warning?: string } {
  if (file && cri && normalizeRef(file.value) !== normalizeRef(cri))
    return {
      image: cri,
      from: 'CRI status',
      warning: `${file.where} is ${file.value} but the running containerd uses ${cri}: it runs on an older config (restart containerd to apply the file); ensuring ${normalizeRef(cri)}, the image pods use now`,
    };
  if (cri) return { image: cri, from: file ? `${file.where}, and CRI status` : 'CRI status' };
  if (file) return { image: file.value, from: file.where };
  return {};
}

/**
 * containerd's sandbox_image is what pods will use. When it points at another region's ECR, pods
 * would pull from the wrong region (and need cross-region credentials): that is an error, not a
 * warning. Any other difference is reported (except a baked local name under `auto`, the modern
 * layout) and the configured name is ensured.
 */
export function planSandboxImage(input: PlanInput): SandboxPlan {
  const mode = input.source ?? 'registry';
  const wanted = normalizeRef(input.wanted);
  const configured = input.configured ? normalizeRef(input.configured) : undefined;
  let target = wanted;
  let warning: string | undefined;
  if (configured && configured !== wanted) {
    const host = parseImageRef(configured)?.host;
    const ecr = host ? parseEcrHost(host) : undefined;
    if (ecr && ecr.region !== input.region)
      throw new BootError(
        'SANDBOX_IMAGE_MISMATCH',
        `containerd's sandbox_image ${configured} is in ${ecr.region}'s ECR but this node is in ${input.region}; pods would pull the pause image from the wrong region`,
        { hint: `set sandbox_image = "${wanted}" in containerd's config.toml and restart containerd` },
      );
    if (!(mode !== 'registry' && isLocalOnly(configured)))
      warning = `containerd's sandbox_image is ${configured}, not ${wanted}${input.explicit ? ' (sandboxImage.image)' : ''}: ensuring ${configured}, the image pods will use`;
    target = configured;
  }
  const archive = input.archive ?? defaultArchive(target);
  const exists = input.exists ?? (() => true);
  const registries = [target, wanted, ...input.fallbacks.map(normalizeRef)]
    .filter((r) => !isLocalOnly(r))
    .map(registrySource);
  const archiveSource: Source = { kind: 'archive', path: archive };
  let sources: Source[];
  if (mode === 'archive') sources = [archiveSource];
  else if (mode === 'auto') sources = [...(exists(archive) ? [archiveSource] : []), ...registries];
  else sources = [...registries, archiveSource];
  return { target, sources: dedupe(sources), archive, ...(warning ? { warning } : {}) };
}

function dedupe(sources: Source[]): Source[] {
  const seen = new Set<string>();
  return sources.filter((s) => {
    const key = s.kind === 'registry' ? s.image : `archive:${s.path}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
