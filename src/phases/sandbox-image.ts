/**
 * Phase sandbox-image: find the reference containerd is configured with (its rendered config.toml
 * and CRI status), make sure containerd has it (per sandboxImage.source: the archive baked into
 * the node image, the regional ECR image, configured fallbacks), pin it, verify the pin.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { ContainerdClient } from '../adapters/containerd.js';
import { PINNED_LABEL } from '../adapters/containerd.js';
import type { CriClient, CriImage } from '../adapters/cri.js';
import type { SandboxSource } from '../config.js';
import type { ContainerdConfig } from '../core/containerd-config.js';
import { normalizeRef, parseImageRef } from '../core/image-ref.js';
import { parseEcrHost, resolveSandboxImage } from '../core/sandbox-image.js';
import {
  configuredSandbox,
  defaultArchive,
  planSandboxImage,
  type SandboxPlan,
  type Source,
} from '../core/sandbox-plan.js';
import { BootError, toBootError } from '../errors.js';
import type { Phase, PhaseContext } from '../runner/phase.js';
import { retrying } from '../runner/retry.js';
import type { RuntimeFacts } from './cri.js';
import { type PullDeps, pullImage } from './pull.js';

export interface SandboxImageDeps extends PullDeps {
  containerd: ContainerdClient;
  /** The node's region from IMDSv2, asked only when config and AWS_REGION say nothing. */
  imdsRegion: (signal: AbortSignal) => Promise<string>;
  /** Imports an image archive through containerd; returns the names it created. */
  importArchive: (file: string, snapshotter: string | undefined, signal: AbortSignal) => Promise<string[]>;
  archiveExists: (file: string) => boolean;
  /** containerd's rendered config (memoized; throws CONTAINERD_CONFIG_INVALID when it does not parse). */
  containerdConfig: () => ContainerdConfig;
}

export interface SandboxImageSettings {
  /** From config `region`, else AWS_REGION. */
  region?: string;
  namespace: string;
  tag: string;
  image?: string;
  fips: boolean;
  dualstack: boolean;
  fallbacks: string[];
  /** Unset: the default for the target (defaultArchive). */
  archive?: string;
  source: SandboxSource;
  /** Pull attempts per registry source in one pass over the sources. */
  attemptsPerSource?: number;
}

const sourceName = (s: Source): string => (s.kind === 'registry' ? s.image : `archive ${s.path}`);

export function sandboxImage(
  deps: SandboxImageDeps,
  s: SandboxImageSettings,
  runtime: RuntimeFacts,
  timeoutMs: number,
  observe = false,
): Phase {
  return {
    name: 'sandbox-image',
    timeoutMs,
    async run(ctx) {
      const { signal } = ctx;
      const rendered = deps.containerdConfig();
      for (const note of rendered.notes) ctx.warn(note);
      const configured = configuredSandbox(rendered.sandboxImage, runtime.configuredSandboxImage);
      if (configured.warning) ctx.warn(configured.warning);

      // The region (IMDS when config and AWS_REGION say nothing) is asked only when it matters: to
      // find the regional image, or to check an ECR reference against the node's region. A node
      // whose configured image is present, or served by its baked archive, needs neither.
      let plan: SandboxPlan | undefined;
      const fullPlan = async (): Promise<SandboxPlan> => {
        if (plan) return plan;
        const region =
          s.region ?? (await retrying(signal, () => deps.imdsRegion(signal), { minDelayMs: 200 }));
        const resolved = resolveSandboxImage({ region, tag: s.tag, fips: s.fips, dualstack: s.dualstack });
        if (!s.image && !resolved.known)
          ctx.warn(
            `${region} is not in node-bootstrap's region table: using ${resolved.image} (${resolved.partition} default account); set sandboxImage.image if that is wrong`,
          );
        plan = planSandboxImage({
          region,
          wanted: s.image ?? resolved.image,
          explicit: s.image !== undefined,
          configured: configured.image,
          fallbacks: s.fallbacks,
          source: s.source,
          exists: deps.archiveExists,
          ...(s.archive ? { archive: s.archive } : {}),
        });
        if (plan.warning) ctx.warn(plan.warning);
        ctx.record({ region });
        return plan;
      };
      const known = configured.image ? normalizeRef(configured.image) : undefined;
      const ecrRef = known !== undefined && parseEcrHost(parseImageRef(known)?.host ?? '') !== undefined;
      const target = known && !ecrRef && s.source !== 'registry' ? known : (await fullPlan()).target;
      ctx.record({
        image: target,
        sourceMode: s.source,
        ...(configured.from ? { configuredFrom: configured.from } : {}),
      });

      let image = await deps.cri.imageStatus(target, signal);
      let source = 'present';
      if (!image && observe) {
        const sources = (await fullPlan()).sources;
        throw new BootError(
          'SANDBOX_IMAGE_MISSING',
          `${target} is not in containerd's ${s.namespace} namespace (observe: would try ${sources.map(sourceName).join(', then ') || 'no source'})`,
        );
      }
      let triedArchive: string | undefined;
      let archiveError: BootError | undefined;
      if (!image && !plan) {
        // The baked archive first, before any AWS call (auto, archive).
        const archive = s.archive ?? defaultArchive(target);
        if (s.source === 'archive' || deps.archiveExists(archive)) {
          triedArchive = archive;
          try {
            await fromArchive(archive, target);
            source = sourceName({ kind: 'archive', path: archive });
            image = await visibleInCri(deps.cri, target, signal);
          } catch (err) {
            if (signal.aborted || s.source === 'archive') throw err;
            archiveError = toBootError(err);
            ctx.log.warn(
              { image: target, code: archiveError.code },
              `archive ${archive}: ${archiveError.message}`,
            );
          }
        }
      }
      if (!image) {
        const sources = (await fullPlan()).sources.filter(
          (x) => !(x.kind === 'archive' && x.path === triedArchive),
        );
        if (sources.length === 0)
          throw new BootError(
            'ARCHIVE_IMPORT_FAILED',
            `no source can serve ${target}: the archive ${triedArchive} failed`,
          );
        source = await retrying(signal, () => fromFirstSource(sources, target), {
          minDelayMs: 1_000,
          maxDelayMs: 15_000,
          onRetry: (err, n) =>
            ctx.status(`no source could serve ${target} (pass ${n}), retrying: ${err.code}`),
        });
        image = await visibleInCri(deps.cri, target, signal);
        if (!image)
          throw new BootError(
            'PULL_FAILED',
            `${target} is missing right after it was obtained from ${source}`,
          );
        if (archiveError)
          ctx.warn(
            `${target} came from ${source} after the baked archive ${triedArchive} failed: ${archiveError.code}: ${archiveError.message}`,
          );
      }
      ctx.log.info({ image: target, source, imageId: image.id }, `sandbox image ${target} from ${source}`);
      ctx.record({ source, imageId: image.id });

      if (observe) {
        const labels = (await deps.containerd.getImage(target, s.namespace, signal)).labels;
        if (labels[PINNED_LABEL] !== 'pinned')
          throw new BootError(
            'PAUSE_NOT_PINNED',
            `${target} does not carry ${PINNED_LABEL}=pinned (observe: would pin it)`,
            {
              hint: 'run `node-bootstrap run` (or guard) to pin it; kubelet image GC may delete it meanwhile',
            },
          );
      } else await deps.containerd.setImageLabel(target, PINNED_LABEL, 'pinned', s.namespace, signal);
      await verifyPinned(ctx, deps.cri, target, runtime);

      /** One pass over the sources; the first that serves wins. */
      async function fromFirstSource(sources: Source[], name: string): Promise<string> {
        const failures: { source: Source; err: BootError }[] = [];
        for (const src of sources) {
          try {
            if (src.kind === 'archive') await fromArchive(src.path, name);
            else await fromRegistry(src, name);
            if (failures.length > 0)
              ctx.warn(
                `${name} came from fallback ${sourceName(src)} after: ${failures.map((f) => `${sourceName(f.source)}: ${f.err.code}`).join('; ')}`,
              );
            return sourceName(src);
          } catch (err) {
            if (signal.aborted) throw err;
            const e = toBootError(err);
            failures.push({ source: src, err: e });
            ctx.log.warn(
              { image: name, code: e.code, source: sourceName(src) },
              `${sourceName(src)}: ${e.message}`,
            );
          }
        }
        const first = failures[0]!.err;
        const rest = failures.slice(1).map((f) => `${sourceName(f.source)}: ${f.err.message}`);
        throw new BootError(first.code, [first.message, ...rest].join('; then '), {
          hint: first.hint,
          // Another pass can help only when some source failed for a passing reason.
          retryable: failures.some((f) => f.err.retryable),
          cause: first,
        });
      }

      async function fromRegistry(src: Extract<Source, { kind: 'registry' }>, name: string): Promise<void> {
        await pullImage(deps, src.image, ctx, s.attemptsPerSource ?? 3);
        if (src.image !== name) await deps.containerd.tagImage(name, src.image, s.namespace, signal);
      }

      async function fromArchive(file: string, name: string): Promise<void> {
        if (!deps.archiveExists(file))
          throw new BootError('ARCHIVE_IMPORT_FAILED', `no image archive at ${file}`, {
            hint: `bake the pause image into the node image at ${file} (sandboxImage.archive)`,
          });
        ctx.status(`importing ${file}`);
        let names: string[];
        try {
          names = await deps.importArchive(file, runtime.snapshotter, signal);
        } catch (err) {
          if (signal.aborted) throw err;
          throw new BootError('ARCHIVE_IMPORT_FAILED', (err as Error).message);
        }
        if (names.includes(name)) return;
        if (names.length === 0) throw new BootError('ARCHIVE_IMPORT_FAILED', `${file} holds no image`);
        await deps.containerd.tagImage(name, names[0]!, s.namespace, signal);
      }
    },
  };
}

/**
 * A name made through containerd's own API (a fallback's retag, an archive import) reaches CRI's
 * image cache through containerd's event stream: ImageStatus can miss it for a few ms (longer under
 * load), on 1.6 and 1.7 alike. A CRI pull is visible at once.
 */
async function visibleInCri(cri: CriClient, target: string, signal: AbortSignal): Promise<CriImage | null> {
  const until = performance.now() + 2_000;
  for (;;) {
    const image = await cri.imageStatus(target, signal);
    if (image || performance.now() >= until) return image;
    await delay(25, undefined, { signal });
  }
}

/**
 * Where CRI reports `pinned` for this image, it must become true (it can lag the label briefly);
 * where it cannot, say so loudly: kubelet's image GC may delete the pause image.
 */
async function verifyPinned(
  ctx: PhaseContext,
  cri: CriClient,
  target: string,
  runtime: RuntimeFacts,
): Promise<void> {
  const caps = runtime.caps;
  const honoured =
    caps !== undefined &&
    (caps.pinsLabelledImages ||
      (caps.pinsSandboxImage &&
        runtime.configuredSandboxImage !== undefined &&
        normalizeRef(runtime.configuredSandboxImage) === target));
  let image: CriImage | null = null;
  const until = performance.now() + 2_000;
  do {
    image = await cri.imageStatus(target, ctx.signal);
    if (image?.pinned || !honoured) break;
    await delay(50, undefined, { signal: ctx.signal });
  } while (performance.now() < until);
  ctx.record({ pinned: image?.pinned === true, pinHonoured: honoured });
  if (!image) throw new BootError('PULL_FAILED', `${target} disappeared right after it was pinned`);
  if (image.pinned) return;
  if (honoured)
    throw new BootError(
      'PAUSE_NOT_PINNED',
      `${target} carries ${PINNED_LABEL}=pinned but containerd ${caps?.version} reports it unpinned`,
    );
  ctx.warn(
    `pause image not pinned: containerd ${caps?.version ?? '(unknown version)'} ignores ${PINNED_LABEL}; kubelet image GC can delete ${target} and the re-pull needs ECR credentials kubelet may not have (upgrade containerd to 1.7.10+; the guard timer restores it meanwhile)`,
  );
}
