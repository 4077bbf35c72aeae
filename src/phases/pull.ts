/**
 * Pulling one image through CRI the way every phase and command does: ECR credentials for ECR hosts
 * (cached per account and region; a cached token the registry refuses is refreshed once), classified
 * errors, bounded retries with backoff and jitter. Used by sandbox-image, guard and prefetch.
 */
import type { CriClient, RegistryAuth } from '../adapters/cri.js';
import type { Ecr } from '../adapters/ecr.js';
import type { TokenCache } from '../adapters/token-cache.js';
import { classifyPullError } from '../core/grpc-errors.js';
import { registrySource } from '../core/sandbox-plan.js';
import { BootError } from '../errors.js';
import type { PhaseContext } from '../runner/phase.js';
import { retrying } from '../runner/retry.js';

export interface PullDeps {
  cri: CriClient;
  /** An ECR API client for a registry's region (the SDK loads on first use only). */
  ecr: (region: string) => Ecr;
  tokens: TokenCache;
}

type Ctx = Pick<PhaseContext, 'signal' | 'status' | 'log'>;

export async function pullImage(deps: PullDeps, image: string, ctx: Ctx, attempts = 3): Promise<void> {
  const { signal } = ctx;
  const src = registrySource(image);
  const ecr = src.kind === 'registry' ? src.ecr : undefined;
  const key = ecr && `${ecr.account}.${ecr.region}`;
  let auth: RegistryAuth | undefined;
  let cached = false;
  if (ecr && key) {
    ctx.status(`getting an ECR token for ${ecr.account} (${ecr.region})`);
    const got = await deps.tokens.getOrFetch(key, () =>
      deps.ecr(ecr.region).getAuthorizationToken(ecr.account, signal),
    );
    auth = { username: got.token.username, password: got.token.password };
    cached = got.cached;
  }
  const pull = (creds: RegistryAuth | undefined) =>
    retrying(
      signal,
      async () => {
        try {
          await deps.cri.pullImage(image, creds, signal);
        } catch (err) {
          if (signal.aborted) throw err;
          throw classifyPullError(err, image);
        }
      },
      {
        retries: attempts - 1,
        minDelayMs: 250,
        maxDelayMs: 2_000,
        onRetry: (err, n) => ctx.status(`pulling ${image} (attempt ${n + 1}): ${err.code}`),
      },
    );
  ctx.status(`pulling ${image}`);
  try {
    await pull(auth);
  } catch (err) {
    // A cached token the registry refuses is refreshed once; a fresh one refused is final.
    if (!(ecr && key && cached && err instanceof BootError && err.code === 'PULL_UNAUTHORIZED')) throw err;
    ctx.log.warn({ image }, 'registry refused the cached ECR token: fetching a new one');
    const fresh = await deps.ecr(ecr.region).getAuthorizationToken(ecr.account, signal);
    await deps.tokens.put(key, fresh);
    await pull({ username: fresh.username, password: fresh.password });
  }
}
