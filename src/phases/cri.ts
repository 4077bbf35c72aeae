/**
 * Phase cri: CRI Version, then Status until RuntimeReady; then what this containerd can do
 * (whether it honours the pinned label: the root cause of pause images deleted by kubelet GC).
 */
import type { ContainerdClient } from '../adapters/containerd.js';
import type { CriClient } from '../adapters/cri.js';
import { type ContainerdCapabilities, capabilities } from '../core/containerd-version.js';
import { criVerdict } from '../core/cri-status.js';
import { classifyCriError } from '../core/grpc-errors.js';
import { BootError } from '../errors.js';
import type { Phase } from '../runner/phase.js';
import { retrying } from '../runner/retry.js';

/** What the cri phase learnt, for the phases after it. */
export interface RuntimeFacts {
  caps?: ContainerdCapabilities;
  /** containerd's configured sandbox_image (CRI Status verbose info). */
  configuredSandboxImage?: string;
  /** The CRI plugin's snapshotter, for archive imports. */
  snapshotter?: string;
}

export function cri(
  client: CriClient,
  containerd: ContainerdClient,
  socket: string,
  timeoutMs: number,
  facts: RuntimeFacts,
): Phase {
  return {
    name: 'cri',
    timeoutMs,
    async run(ctx) {
      const started = performance.now();
      const verdict = await retrying(
        ctx.signal,
        async () => {
          let answer: Awaited<ReturnType<CriClient['status']>>;
          try {
            await client.version(ctx.signal);
            answer = await client.status(ctx.signal, true);
          } catch (err) {
            if (ctx.signal.aborted) throw err;
            throw classifyCriError(err, socket);
          }
          const v = criVerdict(answer.conditions, answer.info);
          if (!v.ready) throw new BootError('CRI_NOT_READY', `CRI at ${socket}: ${v.reason}`);
          return v;
        },
        {
          minDelayMs: 10,
          maxDelayMs: 250,
          factor: 1.5,
          onRetry: (err, n) =>
            ctx.status(
              `waiting for CRI (${((performance.now() - started) / 1000).toFixed(0)}s, attempt ${n}): ${err.message}`,
            ),
        },
      );
      const { version } = await containerd.version(ctx.signal);
      facts.caps = capabilities(version);
      facts.configuredSandboxImage = verdict.sandboxImage;
      facts.snapshotter = verdict.snapshotter;
      ctx.record({
        containerdVersion: version,
        pinsLabelledImages: facts.caps.pinsLabelledImages,
        criWaitMs: Math.round(performance.now() - started),
        ...(verdict.sandboxImage ? { configuredSandboxImage: verdict.sandboxImage } : {}),
      });
      if (!facts.caps.pinsLabelledImages)
        ctx.warn(
          `containerd ${version} does not honour the pinned label in CRI (needs 1.7.10+): kubelet image GC can delete the pause image`,
        );
    },
  };
}
