/**
 * A local stand-in for the ECR API (AWS JSON 1.1), serving GetAuthorizationToken to the real AWS SDK
 * (point it here with AWS_ENDPOINT_URL_ECR). Errors use the wire shape the SDK parses: a JSON body
 * {"__type","message"} plus the x-amzn-ErrorType header, with ECR's status codes.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

const TARGET_PREFIX = 'AmazonEC2ContainerRegistry_V20150921.';
const CONTENT_TYPE = 'application/x-amz-json-1.1';

export interface EcrRequest {
  /** The operation, e.g. GetAuthorizationToken (X-Amz-Target without its prefix). */
  target: string;
  /** From the SigV4 Authorization header's Credential= scope; undefined when unsigned. */
  accessKeyId?: string;
  /** The region of the SigV4 credential scope. */
  region?: string;
  registryIds?: string[];
  /** Date.now() when the request arrived. */
  time: number;
}

export type EcrFaultMode = 'ok' | 'access-denied' | 'throttle' | 'server-error' | 'slow';
export interface EcrFault {
  mode: EcrFaultMode;
  /** Apply the fault to the next N requests only, then answer normally again. */
  count?: number;
  /** For 'slow': how long to wait before answering. */
  delayMs?: number;
}

export interface EcrApi {
  url: string;
  setFault(f: EcrFault): void;
  requests: EcrRequest[];
  close(): Promise<void>;
}

interface ErrorReply {
  status: number;
  type: string;
  message: string;
}

function faultReply(mode: EcrFaultMode, accessKeyId: string | undefined): ErrorReply | undefined {
  switch (mode) {
    case 'access-denied':
      return {
        status: 400,
        type: 'AccessDeniedException',
        message:
          `User: arn:aws:sts::111122223333:assumed-role/testbed-node-role/${accessKeyId ?? 'unknown'} ` +
          'is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no ' +
          'identity-based policy allows the ecr:GetAuthorizationToken action',
      };
    case 'throttle':
      return { status: 400, type: 'ThrottlingException', message: 'Rate exceeded' };
    case 'server-error':
      return { status: 500, type: 'ServerException', message: 'Internal service error (testbed)' };
    default:
      return undefined;
  }
}

/** `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/ecr/aws4_request, ...` → [AKID, region]. */
function credentialScope(auth: string | undefined): [string | undefined, string | undefined] {
  const m = /Credential=([^/,\s]+)\/\d{8}\/([^/]+)\//.exec(auth ?? '');
  return [m?.[1], m?.[2]];
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, body: unknown, errorType?: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': CONTENT_TYPE,
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': randomUUID(),
    ...(errorType
      ? { 'x-amzn-errortype': `${errorType}:http://internal.amazon.com/coral/com.amazon.coral.service/` }
      : {}),
  });
  res.end(text);
}

const sendError = (res: ServerResponse, e: ErrorReply): void =>
  send(res, e.status, { __type: e.type, message: e.message }, e.type);

export async function startEcrApi(opts: {
  password: string;
  expectedAccessKeyId?: string;
  proxyEndpoint?: string;
}): Promise<EcrApi> {
  const requests: EcrRequest[] = [];
  let fault: EcrFault = { mode: 'ok' };
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  /** The fault for this request, consuming one unit of `count`. */
  const takeFault = (): EcrFault => {
    const f = fault;
    if (f.mode !== 'ok' && f.count !== undefined) {
      if (f.count <= 1) fault = { mode: 'ok' };
      else fault = { ...f, count: f.count - 1 };
    }
    return f;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    const target = String(req.headers['x-amz-target'] ?? '');
    const [accessKeyId, region] = credentialScope(req.headers.authorization);
    let input: { registryIds?: string[] } = {};
    try {
      input = body ? (JSON.parse(body) as typeof input) : {};
    } catch {
      return sendError(res, { status: 400, type: 'SerializationException', message: 'invalid JSON body' });
    }
    requests.push({
      target: target.replace(TARGET_PREFIX, ''),
      accessKeyId,
      region,
      registryIds: input.registryIds,
      time: Date.now(),
    });
    if (req.method !== 'POST' || target !== `${TARGET_PREFIX}GetAuthorizationToken`) {
      return sendError(res, {
        status: 400,
        type: 'UnknownOperationException',
        message: `unknown target ${target}`,
      });
    }
    if (opts.expectedAccessKeyId !== undefined && accessKeyId !== opts.expectedAccessKeyId) {
      return sendError(res, {
        status: 400,
        type: 'UnrecognizedClientException',
        message: 'The security token included in the request is invalid.',
      });
    }
    const f = takeFault();
    if (f.mode === 'slow') {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          timers.delete(t);
          resolve();
        }, f.delayMs ?? 1_000);
        timers.add(t);
      });
      if (res.destroyed) return;
    }
    const err = faultReply(f.mode, accessKeyId);
    if (err) return sendError(res, err);
    const ids = input.registryIds?.length ? input.registryIds : [undefined];
    const expiresAt = Math.floor(Date.now() / 1000) + 12 * 3600;
    send(res, 200, {
      authorizationData: ids.map((id) => ({
        authorizationToken: Buffer.from(`AWS:${opts.password}`).toString('base64'),
        expiresAt,
        proxyEndpoint:
          opts.proxyEndpoint ??
          `https://${id ?? '111122223333'}.dkr.ecr.${region ?? 'us-west-2'}.amazonaws.com`,
      })),
    });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, { status: 500, type: 'ServerException', message: String(err) });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setFault(f) {
      fault = f;
    },
    close() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
