/**
 * Which sandbox image to ensure, and from where: pure decisions of the sandbox-image phase.
 * The target is the name kubelet and containerd will ask for; sources are tried in order.
 */
import { BootError } from '../errors.js';
import { normalizeRef, parseImageRef } from './image-ref.js';
import { parseEcrHost } from './sandbox-image.js';

export type Source =
  | { kind: 'registry'; image: string; ecr?: { account: string; region: string } }
  | { kind: 'archive'; path: string };

export interface SandboxPlan {
  target: string;
  sources: Source[];
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
  /** containerd's configured sandbox_image (CRI Status verbose), when it reports one. */
  configured?: string;
  fallbacks: readonly string[];
  archive?: string;
}

export function registrySource(image: string): Source {
  const host = parseImageRef(image)?.host;
  const ecr = host ? parseEcrHost(host) : undefined;
  return { kind: 'registry', image, ...(ecr ? { ecr: { account: ecr.account, region: ecr.region } } : {}) };
}

/**
 * containerd's sandbox_image is what pods will use. When it points at another region's ECR, pods
 * would pull from the wrong region (and need cross-region credentials): that is an error, not a
 * warning. Any other difference is reported and the configured name is ensured as well.
 */
export function planSandboxImage(input: PlanInput): SandboxPlan {
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
    warning = `containerd's sandbox_image is ${configured}, not ${wanted}${input.explicit ? ' (sandboxImage.image)' : ''}: ensuring ${configured}, the image pods will use`;
    target = configured;
  }
  const sources: Source[] = [
    registrySource(wanted),
    ...input.fallbacks.map((f) => registrySource(normalizeRef(f))),
  ];
  if (target !== wanted) sources.unshift(registrySource(target));
  if (input.archive) sources.push({ kind: 'archive', path: input.archive });
  return { target, sources: dedupe(sources), warning };
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
