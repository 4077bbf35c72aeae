/**
 * Classifies what containerd answers over gRPC into stable codes: pure, by gRPC code, then message
 * (the table of real answers is in the README's troubleshooting section).
 */
import { BootError } from '../errors.js';
import { parseEcrHost } from './sandbox-image.js';

/** The shape of a @grpc/grpc-js ServiceError, without importing grpc-js. */
export interface GrpcLikeError {
  code?: number;
  details?: string;
  message?: string;
}

export const GRPC = {
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  UNIMPLEMENTED: 12,
  UNAVAILABLE: 14,
} as const;

const text = (e: GrpcLikeError): string => e.details || e.message || '';

/** Errors of CRI Version/Status while waiting for containerd's CRI to become ready. */
export function classifyCriError(err: unknown, socket: string): BootError {
  const e = err as GrpcLikeError;
  const msg = text(e);
  if (e.code === GRPC.UNIMPLEMENTED)
    return new BootError('CRI_UNIMPLEMENTED', `containerd at ${socket} does not serve CRI: ${msg}`);
  if (e.code === GRPC.UNAVAILABLE || e.code === GRPC.DEADLINE_EXCEEDED || /not initialized yet/.test(msg))
    return new BootError('CRI_NOT_READY', `CRI at ${socket} not ready: ${msg}`, { cause: err });
  return new BootError('CRI_NOT_READY', `CRI at ${socket} answered an error (gRPC ${e.code}): ${msg}`, {
    cause: err,
  });
}

/**
 * For an ECR registry host, the VPC endpoints a private subnet needs for containerd's pull: the
 * registry (ecr.dkr) and the S3 gateway (image layers are served from S3); and that containerd
 * needs its own proxy environment when the node uses one.
 */
export function pullNetworkHint(host: string): string | undefined {
  const r = parseEcrHost(host)?.region;
  if (!r) return undefined;
  return (
    `check the route to ${host} (NAT gateway), or in a private subnet the com.amazonaws.${r}.ecr.dkr interface endpoint ` +
    `and the com.amazonaws.${r}.s3 gateway endpoint (layers come from S3) in the node's route table; ` +
    'behind a proxy, containerd pulls through HTTPS_PROXY in its own unit environment (see `node-bootstrap check`, proxy)'
  );
}

/** Errors of a CRI PullImage, by what containerd 1.6 and 1.7 really say. */
export function classifyPullError(err: unknown, image: string): BootError {
  const e = err as GrpcLikeError;
  const msg = text(e);
  const host = image.split('/')[0] ?? image;
  if (e.code === GRPC.NOT_FOUND || /: not found$/.test(msg))
    return new BootError('PULL_NOT_FOUND', `${image} does not exist in ${host}: ${msg}`);
  if (
    /401 Unauthorized|403 Forbidden|no basic auth credentials|pull access denied|authorization failed/i.test(
      msg,
    )
  )
    return new BootError('PULL_UNAUTHORIZED', `${host} refused the credentials for ${image}: ${msg}`);
  if (/x509:|certificate signed by unknown authority|certificate is not valid/i.test(msg))
    return new BootError('PULL_TLS_UNTRUSTED', `TLS to ${host} failed: ${msg}`, {
      hint: `install the CA of ${host} (hosts.toml under containerd's config_path, or the system trust store) and restart containerd`,
    });
  if (/failed to parse image reference|invalid reference format/i.test(msg))
    return new BootError('PULL_BAD_REFERENCE', `${image} is not a valid image reference: ${msg}`);
  if (
    e.code === GRPC.UNAVAILABLE ||
    e.code === GRPC.DEADLINE_EXCEEDED ||
    /connection refused|no such host|i\/o timeout|TLS handshake timeout|connection reset|network is unreachable|EOF$|5\d\d (Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout)|429 Too Many Requests|toomanyrequests/i.test(
      msg,
    )
  )
    return new BootError('PULL_NETWORK', `${host} could not serve ${image}: ${msg}`, {
      cause: err,
      ...(pullNetworkHint(host) ? { hint: pullNetworkHint(host) } : {}),
    });
  if (/not initialized yet/.test(msg)) return new BootError('CRI_NOT_READY', `CRI not ready: ${msg}`);
  return new BootError('PULL_FAILED', `pulling ${image} failed (gRPC ${e.code}): ${msg}`, { cause: err });
}
