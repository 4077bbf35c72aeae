/**
 * ECR GetAuthorizationToken through the AWS SDK. The SDK is loaded on first use only (commands that
 * never talk to AWS never pay for it), resolves the endpoint itself (AWS_ENDPOINT_URL_ECR included),
 * finds credentials with its default chain, and is the one retry owner (standard mode, maxAttempts).
 * The token is never put in an error message or a log.
 */
import type { ECRClient } from '@aws-sdk/client-ecr';
import { type ImdsFinding, toEcrBootError } from '../core/ecr-errors.js';
import { hasProxy, type ProxySettings, redactProxy } from '../core/proxy.js';
import { BootError } from '../errors.js';
import { type Imds, ImdsError } from './imds.js';

export interface EcrToken {
  username: string;
  password: string;
  expiresAt: Date;
  /** https://<account>.dkr.ecr.<region>.amazonaws.com */
  proxyEndpoint: string;
}

export interface Ecr {
  getAuthorizationToken(registryId: string, signal: AbortSignal): Promise<EcrToken>;
}

export interface EcrOptions {
  region: string;
  /** Explicit endpoint override; by default the SDK resolves it (and honours AWS_ENDPOINT_URL_ECR). */
  endpoint?: string;
  /** Attempts per call, retries included (the SDK's standard retry mode). Default 3. */
  maxAttempts?: number;
  /** Per attempt, so that a hung attempt is retried. Default 10 s. */
  requestTimeoutMs?: number;
  /** When the SDK finds no credentials, asked for the instance profile to tell the operator why. */
  imds?: Pick<Imds, 'role'>;
  /**
   * The node's proxy settings (core/proxy.ts), asked once before the first call: HTTPS_PROXY,
   * HTTP_PROXY and NO_PROXY are applied to the ECR API explicitly (Node ignores them on its own).
   */
  proxy?: () => Promise<ProxySettings | undefined>;
}

async function findInstanceProfile(
  imds: Pick<Imds, 'role'>,
  signal: AbortSignal,
): Promise<ImdsFinding | undefined> {
  try {
    return { role: await imds.role(signal) };
  } catch (err) {
    if (!(err instanceof ImdsError)) return undefined;
    return { failure: err.reason, message: err.message, hint: err.hint, retryable: err.retryable };
  }
}

/** base64("AWS:<password>") → its two parts, without ever echoing the token. */
function decodeToken(token: string): { username: string; password: string } | undefined {
  const text = Buffer.from(token, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i > 0 && i < text.length - 1
    ? { username: text.slice(0, i), password: text.slice(i + 1) }
    : undefined;
}

export function createEcr(opts: EcrOptions): Ecr {
  let client: Promise<ECRClient> | undefined;
  let agent: import('./proxy-agent.js').ProxyRoutingAgent | undefined;
  let proxies: ProxySettings | undefined;
  const getClient = (): Promise<ECRClient> => {
    client ??= (async () => {
      proxies = await opts.proxy?.();
      if (proxies && hasProxy(proxies)) {
        const { ProxyRoutingAgent } = await import('./proxy-agent.js');
        agent = new ProxyRoutingAgent(proxies);
      }
      const { ECRClient } = await import('@aws-sdk/client-ecr');
      return new ECRClient({
        region: opts.region,
        ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
        maxAttempts: opts.maxAttempts ?? 3,
        retryMode: 'standard',
        requestHandler: {
          connectionTimeout: 3_000,
          requestTimeout: opts.requestTimeoutMs ?? 10_000,
          throwOnRequestTimeout: true,
          ...(agent ? { httpsAgent: agent, httpAgent: agent } : {}),
        },
      });
    })();
    return client;
  };
  /** The proxy the failed call went through (redacted) and the variable that set it. */
  const proxyContext = () => {
    const route = agent?.lastRoute;
    if (!route?.proxy) return undefined;
    const via =
      route.target && proxies?.https && redactProxy(proxies.https.value) === route.proxy
        ? proxies.https
        : proxies?.http;
    return {
      url: route.proxy,
      target: route.target,
      ...(via ? { variable: via.variable, source: via.source } : {}),
    };
  };

  return {
    async getAuthorizationToken(registryId, signal) {
      const { GetAuthorizationTokenCommand } = await import('@aws-sdk/client-ecr');
      const ecr = await getClient();
      let data: { authorizationToken?: string; expiresAt?: Date; proxyEndpoint?: string } | undefined;
      try {
        const out = await ecr.send(new GetAuthorizationTokenCommand({ registryIds: [registryId] }), {
          abortSignal: signal,
        });
        data = out.authorizationData?.[0];
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        const noCredentials = (err as { name?: string }).name === 'CredentialsProviderError';
        const imds = noCredentials && opts.imds ? await findInstanceProfile(opts.imds, signal) : undefined;
        const proxy = proxyContext();
        throw toEcrBootError(err, { region: opts.region, imds, ...(proxy ? { proxy } : {}) });
      }
      const creds = data?.authorizationToken ? decodeToken(data.authorizationToken) : undefined;
      if (!creds || !data?.expiresAt || !data.proxyEndpoint)
        throw new BootError(
          'ECR_UNAVAILABLE',
          `ECR answered GetAuthorizationToken for ${registryId} without a usable token, expiry or endpoint`,
          { retryable: false },
        );
      return { ...creds, expiresAt: data.expiresAt, proxyEndpoint: data.proxyEndpoint };
    },
  };
}
