/**
 * A small IMDSv2 client: region, instance identity and the instance profile's role. Always direct
 * (node:http, its own agent, never a proxy). Each request has its own timeout and honours the
 * caller's signal; failures say exactly what happened (disabled, refused, token PUT lost to the
 * hop limit, IMDSv2 refused, no instance profile).
 */
import { request } from 'node:http';
import { BootError } from '../errors.js';

export const DEFAULT_IMDS_ENDPOINT = 'http://169.254.169.254';
const TOKEN_PATH = '/latest/api/token';
const ROLE_PATH = '/latest/meta-data/iam/security-credentials/';
const TOKEN_TTL_S = 21_600;
/** EC2 user data is at most 16 KB (base64-decoded); documents are far smaller. */
const MAX_BODY = 64 * 1024;
export const USER_DATA_PATH = '/latest/user-data';

/** Why an IMDS call failed: stable, for callers that pick their own code or hint. */
export type ImdsFailure =
  | 'disabled'
  | 'refused'
  | 'unreachable'
  | 'timeout'
  | 'token-timeout'
  | 'token-refused'
  | 'unauthorized'
  | 'no-role'
  | 'http';

export class ImdsError extends BootError {
  constructor(
    readonly reason: ImdsFailure,
    message: string,
    opts: { hint?: string; retryable?: boolean; cause?: unknown } = {},
  ) {
    super('IMDS_UNAVAILABLE', message, opts);
  }
}

export interface InstanceIdentity {
  region: string;
  accountId: string;
  instanceId: string;
  availabilityZone?: string;
  instanceType?: string;
}

export interface Imds {
  region(signal: AbortSignal): Promise<string>;
  identity(signal: AbortSignal): Promise<InstanceIdentity>;
  /** The IAM role of the instance profile (what the AWS SDK's default chain would use). */
  role(signal: AbortSignal): Promise<string>;
  /** The instance's user data as bytes; undefined when it has none (404). */
  userData(signal: AbortSignal): Promise<Uint8Array | undefined>;
}

export interface ImdsOptions {
  /** AWS_EC2_METADATA_SERVICE_ENDPOINT; default http://169.254.169.254. */
  endpoint?: string;
  /** AWS_EC2_METADATA_DISABLED=true. */
  disabled?: boolean;
  /** Per request, the token PUT included. Default 1000 ms (the AWS SDK's own IMDS timeout). */
  timeoutMs?: number;
}

interface Reply {
  status: number;
  body: string;
  /** The body as bytes (user data may be gzip). */
  raw: Buffer;
}

const HOP_LIMIT_FIX =
  'set HttpPutResponseHopLimit to 2: `aws ec2 modify-instance-metadata-options --instance-id <id> ' +
  '--http-put-response-hop-limit 2`, or MetadataOptions.HttpPutResponseHopLimit: 2 in the launch template';
const NO_ROLE_FIX =
  'attach an instance profile whose role has AmazonEC2ContainerRegistryPullOnly ' +
  '(`aws ec2 associate-iam-instance-profile`, or IamInstanceProfile in the launch template)';

export function createImds(opts: ImdsOptions = {}): Imds {
  const base = new URL(opts.endpoint || DEFAULT_IMDS_ENDPOINT);
  const where = base.origin;
  const timeoutMs = opts.timeoutMs ?? 1_000;
  let token: { value: string; until: number } | undefined;

  /** One HTTP exchange; network failures and timeouts become ImdsErrors, HTTP statuses are returned. */
  const exchange = (
    method: 'GET' | 'PUT',
    path: string,
    signal: AbortSignal,
    headers: Record<string, string>,
  ) =>
    new Promise<Reply>((resolve, reject) => {
      const timeout = AbortSignal.timeout(timeoutMs);
      const req = request({
        protocol: base.protocol,
        hostname: base.hostname.replace(/^\[(.+)\]$/, '$1'),
        port: base.port || undefined,
        method,
        path,
        headers,
        agent: false,
        signal: AbortSignal.any([signal, timeout]),
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (signal.aborted) return reject(signal.reason);
        if (timeout.aborted && path === TOKEN_PATH)
          return reject(
            new ImdsError(
              'token-timeout',
              `IMDSv2 token request (PUT ${where}${TOKEN_PATH}) got no answer within ${timeoutMs} ms: ` +
                'most likely the instance has HttpPutResponseHopLimit=1 and node-bootstrap runs in a ' +
                'container or network namespace, one hop too far for the PUT response',
              { hint: HOP_LIMIT_FIX },
            ),
          );
        if (timeout.aborted)
          return reject(
            new ImdsError(
              'timeout',
              `IMDS at ${where} did not answer ${method} ${path} within ${timeoutMs} ms`,
            ),
          );
        if (err.code === 'ECONNREFUSED')
          return reject(
            new ImdsError(
              'refused',
              `IMDS at ${where} refused the connection (ECONNREFUSED) on ${method} ${path}`,
              {
                hint: 'nothing listens at the IMDS endpoint: check HttpEndpoint=enabled in the instance metadata options, or AWS_EC2_METADATA_SERVICE_ENDPOINT',
                cause: err,
              },
            ),
          );
        reject(
          new ImdsError(
            'unreachable',
            `IMDS at ${where} is unreachable (${err.code ?? err.message}) on ${method} ${path}`,
            {
              hint: 'not on EC2, or a route/firewall rule blocks the link-local IMDS address',
              cause: err,
            },
          ),
        );
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (size < MAX_BODY) chunks.push(chunk);
          size += chunk.length;
        });
        res.on('end', () => {
          const raw = Buffer.concat(chunks).subarray(0, MAX_BODY);
          resolve({ status: res.statusCode ?? 0, body: raw.toString('utf8'), raw });
        });
        res.on('error', (err) => req.destroy(err));
      });
      req.end();
    });

  const getToken = async (signal: AbortSignal): Promise<string> => {
    if (token && Date.now() < token.until) return token.value;
    const r = await exchange('PUT', TOKEN_PATH, signal, {
      'x-aws-ec2-metadata-token-ttl-seconds': String(TOKEN_TTL_S),
    });
    if (r.status === 401 || r.status === 403 || r.status === 404 || r.status === 405)
      throw new ImdsError(
        'token-refused',
        `IMDS at ${where} refused the IMDSv2 token (PUT ${TOKEN_PATH} → ${r.status}): IMDSv2 disabled, an ` +
          'IMDSv1-only endpoint, or a proxy in the way (IMDS refuses a PUT carrying X-Forwarded-For)',
        {
          hint: 'node-bootstrap needs IMDSv2: check the instance metadata options and that IMDS is reached directly',
        },
      );
    if (r.status !== 200 || !r.body)
      throw new ImdsError('http', `IMDS at ${where} answered ${r.status} to PUT ${TOKEN_PATH}`);
    token = { value: r.body, until: Date.now() + (TOKEN_TTL_S - 60) * 1000 };
    return token.value;
  };

  const getReply = async (path: string, signal: AbortSignal): Promise<Reply> => {
    if (opts.disabled)
      throw new ImdsError(
        'disabled',
        `IMDS is disabled by AWS_EC2_METADATA_DISABLED=true (needed for ${path})`,
        {
          retryable: false,
          hint: 'unset AWS_EC2_METADATA_DISABLED for node-bootstrap, or set `region` in /etc/node-bootstrap/config.yaml when only the region was needed',
        },
      );
    const r = await exchange('GET', path, signal, { 'x-aws-ec2-metadata-token': await getToken(signal) });
    if (r.status === 200 || (r.status === 404 && path === USER_DATA_PATH)) return r;
    if (r.status === 401) {
      token = undefined; // expired or issued by another IMDS: the next call asks for a new one
      throw new ImdsError('unauthorized', `IMDS at ${where} rejected the session token (401) on GET ${path}`);
    }
    if (r.status === 404 && path === ROLE_PATH)
      throw new ImdsError(
        'no-role',
        `no instance profile: IMDS has no IAM role for this instance (GET ${path} → 404)`,
        {
          retryable: false,
          hint: NO_ROLE_FIX,
        },
      );
    throw new ImdsError('http', `IMDS at ${where} answered ${r.status} to GET ${path}`);
  };
  const get = async (path: string, signal: AbortSignal): Promise<string> =>
    (await getReply(path, signal)).body;

  return {
    region: async (signal) => (await get('/latest/meta-data/placement/region', signal)).trim(),
    identity: async (signal) => {
      const body = await get('/latest/dynamic/instance-identity/document', signal);
      let doc: Partial<InstanceIdentity>;
      try {
        doc = JSON.parse(body) as Partial<InstanceIdentity>;
      } catch {
        throw new ImdsError('http', `IMDS at ${where} served an identity document that is not JSON`);
      }
      if (!doc.region || !doc.accountId || !doc.instanceId)
        throw new ImdsError(
          'http',
          `IMDS at ${where} served an identity document without region/accountId/instanceId`,
        );
      const { region, accountId, instanceId, availabilityZone, instanceType } = doc;
      return { region, accountId, instanceId, availabilityZone, instanceType };
    },
    userData: async (signal) => {
      const r = await getReply(USER_DATA_PATH, signal);
      return r.status === 404 ? undefined : new Uint8Array(r.raw);
    },
    role: async (signal) => {
      const name = (await get(ROLE_PATH, signal)).split('\n')[0]?.trim();
      if (!name)
        throw new ImdsError('no-role', `no instance profile: IMDS lists no IAM role (GET ${ROLE_PATH})`, {
          retryable: false,
          hint: NO_ROLE_FIX,
        });
      return name;
    },
  };
}
