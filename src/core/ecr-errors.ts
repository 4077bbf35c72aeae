/**
 * Classifies what the AWS SDK's ECR client throws into stable codes with hints an operator can act
 * on. Pure: it reads only the error's fields (name, $fault, $metadata, Node error codes) and what
 * our own IMDS client found when the SDK found no credentials.
 */
import { BootError, type ErrorCode } from '../errors.js';

export interface EcrErrorClass {
  code: ErrorCode;
  retryable: boolean;
  message: string;
  hint: string;
}

/**
 * What our IMDS client found when asked for the instance profile (adapters/imds.ts): the role, or
 * why it could not tell (an ImdsError's reason, message, hint).
 */
export type ImdsFinding =
  | { role: string }
  | { failure: string; message: string; hint: string; retryable: boolean };

/** The proxy the failed call went through: its URL (credentials removed) and what set it. */
export interface ProxyContext {
  url: string;
  /** host:port the call was for. */
  target?: string;
  variable?: string;
  source?: string;
}

export interface EcrErrorContext {
  region?: string;
  imds?: ImdsFinding;
  proxy?: ProxyContext;
}

/** The fields of SDK, provider and Node errors that decide the class. */
interface SdkLikeError {
  name?: string;
  message?: string;
  code?: string;
  hostname?: string;
  address?: string;
  port?: number;
  $fault?: 'client' | 'server';
  $retryable?: { throttling?: boolean };
  $metadata?: { httpStatusCode?: number; attempts?: number };
}

const AUTH_REJECTED = new Set([
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'ExpiredTokenException',
  'IncompleteSignature',
  'MissingAuthenticationToken',
]);
const THROTTLED = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
]);
const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const TIMEOUTS = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);

const ROLE_HINT = 'give the node role ecr:GetAuthorizationToken (attach AmazonEC2ContainerRegistryPullOnly)';
const NO_CREDENTIALS_HINT =
  'attach an instance profile (IAM role) to the instance; if it has one, check that IMDS answers IMDSv2 ' +
  'with HttpPutResponseHopLimit >= 2 when node-bootstrap runs in a container';

const apiHost = (region?: string): string =>
  region
    ? `api.ecr.${region}.${region.startsWith('cn-') ? 'amazonaws.com.cn' : 'amazonaws.com'}`
    : 'the ECR API';
const attemptsOf = (e: SdkLikeError): string => {
  const n = e.$metadata?.attempts;
  return n && n > 1 ? ` after ${n} attempts` : '';
};

function credentials(ctx: EcrErrorContext): EcrErrorClass {
  const found = ctx.imds;
  const what = 'the AWS SDK found no credentials for the ECR API';
  if (!found) return { code: 'ECR_AUTH_FAILED', retryable: false, message: what, hint: NO_CREDENTIALS_HINT };
  if ('role' in found)
    return {
      code: 'ECR_AUTH_FAILED',
      retryable: true,
      message: `${what}, although IMDS serves the instance profile role ${found.role}`,
      hint: 'the role credentials could not be read; check the role still exists and its trust policy allows ec2.amazonaws.com',
    };
  const noIdentity = found.failure === 'no-role' || found.failure === 'disabled';
  return {
    code: noIdentity ? 'ECR_AUTH_FAILED' : 'IMDS_UNAVAILABLE',
    retryable: found.retryable,
    message: `${what}: ${found.message}`,
    hint: found.hint,
  };
}

/** The VPC interface endpoint that serves the ECR API in a private subnet. */
export const ecrApiEndpoint = (region?: string): string => `com.amazonaws.${region ?? '<region>'}.ecr.api`;

const proxyNamed = (p: ProxyContext): string =>
  `the proxy ${p.url}${p.variable ? ` (${p.variable}${p.source ? ` from ${p.source}` : ''})` : ''}`;

function network(e: SdkLikeError, ctx: EcrErrorContext): EcrErrorClass {
  const region = ctx.region ?? '<region>';
  const dns = e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN';
  if (ctx.proxy) {
    const p = ctx.proxy;
    const target = p.target ?? apiHost(ctx.region);
    return {
      code: 'ECR_UNAVAILABLE',
      retryable: true,
      message:
        `cannot reach ${target} through ${proxyNamed(p)}: ${e.code ?? e.name} ${e.message ?? ''}`.trim() +
        attemptsOf(e),
      hint: `check that ${p.url} is up and allows CONNECT to ${target}; or, without a proxy, give the subnet the ${ecrApiEndpoint(region)} interface endpoint (private DNS on) and add .amazonaws.com to NO_PROXY`,
    };
  }
  const host = e.hostname ?? apiHost(ctx.region);
  return {
    code: 'ECR_UNAVAILABLE',
    retryable: true,
    message: dns
      ? `cannot resolve ${host} (${e.code})${attemptsOf(e)}`
      : `cannot reach ${host} (${e.code ?? e.name}: ${e.message ?? ''})${attemptsOf(e)}`,
    hint: dns
      ? `check the VPC DNS (enableDnsSupport) and, in a private subnet, the com.amazonaws.${region}.ecr.api interface endpoint with private DNS enabled`
      : `check the route to ${host} (NAT gateway) or the com.amazonaws.${region}.ecr.api VPC endpoint and its security group (TCP 443 from the node)`,
  };
}

export function classifyEcrError(err: unknown, ctx: EcrErrorContext = {}): EcrErrorClass {
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as SdkLikeError;
  const name = e.name ?? '';
  const status = e.$metadata?.httpStatusCode;
  const said = `${name}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? ''}`;

  if (name === 'AbortError')
    return {
      code: 'ABORTED',
      retryable: true,
      message: 'ECR GetAuthorizationToken aborted',
      hint: 'the run was stopped',
    };
  if (name === 'CredentialsProviderError' || name === 'ProviderError') return credentials(ctx);
  if (name === 'AccessDeniedException')
    return {
      code: 'ECR_AUTH_FAILED',
      retryable: false,
      message: `ECR denied GetAuthorizationToken: ${said}`,
      hint: ROLE_HINT,
    };
  if (AUTH_REJECTED.has(name))
    return {
      code: 'ECR_AUTH_FAILED',
      retryable: false,
      message: `ECR rejected the request's credentials: ${said}`,
      hint: 'the signature or the credentials were refused: check the clock (chronyc tracking) and that the instance profile credentials come from this partition',
    };
  if (THROTTLED.has(name) || status === 429 || e.$retryable?.throttling)
    return {
      code: 'ECR_THROTTLED',
      retryable: true,
      message: `ECR throttled GetAuthorizationToken${attemptsOf(e)}: ${said}`,
      hint: 'the token request is retried with backoff; many nodes booting at once share the account rate limit',
    };
  if ((e.code && NETWORK.has(e.code)) || TIMEOUTS.has(name)) return network(e, ctx);
  // A proxy that refuses the tunnel answers for ECR: its status reaches the SDK as ECR's.
  if (
    ctx.proxy &&
    status !== undefined &&
    [403, 407, 502, 503, 504].includes(status) &&
    !name.endsWith('Exception')
  )
    return {
      code: 'ECR_UNAVAILABLE',
      retryable: status !== 403 && status !== 407,
      message: `${proxyNamed(ctx.proxy)} answered HTTP ${status} for ${ctx.proxy.target ?? apiHost(ctx.region)}${status === 407 ? ' (proxy authentication required)' : status === 403 ? ' (CONNECT refused)' : ''}`,
      hint:
        status === 407
          ? 'put the proxy credentials in the proxy URL (http://user:password@host:port) in the unit environment or NodeConfig'
          : `allow CONNECT to ${apiHost(ctx.region)}:443 on the proxy, or bypass it with NO_PROXY and the ${ecrApiEndpoint(ctx.region)} VPC endpoint`,
    };
  if (e.$fault === 'server' || (status !== undefined && status >= 500))
    return {
      code: 'ECR_UNAVAILABLE',
      retryable: true,
      message: `ECR API failed${attemptsOf(e)}: ${said}`,
      hint: `${apiHost(ctx.region)} answered a server error; it is retried, check the AWS Health Dashboard if it lasts`,
    };
  if (e.$fault === 'client')
    return {
      code: 'ECR_UNAVAILABLE',
      retryable: false,
      message: `ECR refused GetAuthorizationToken: ${said}`,
      hint: 'the request was rejected as invalid; check the registry account id and region',
    };
  return {
    code: 'INTERNAL',
    retryable: false,
    message: `unexpected error from the ECR client: ${said}`,
    hint: 'this is a bug in node-bootstrap; please report it with `node-bootstrap report --json`',
  };
}

export function toEcrBootError(err: unknown, ctx: EcrErrorContext = {}): BootError {
  const c = classifyEcrError(err, ctx);
  return new BootError(c.code, c.message, { hint: c.hint, retryable: c.retryable, cause: err });
}
