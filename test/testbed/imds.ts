/**
 * A local IMDSv2 stand-in, for our IMDS client and for the AWS SDK's default credential chain
 * (point both at it with AWS_EC2_METADATA_SERVICE_ENDPOINT). Faults reproduce what nodes really see:
 * IMDS down (connection refused), IMDSv1 only, the token PUT lost to HttpPutResponseHopLimit=1
 * (silence), and no instance profile.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type ImdsFaultMode =
  /** IMDSv2 as EC2 serves it with HttpTokens=required. */
  | 'ok'
  /** Nothing listens: connections are refused. */
  | 'down'
  /** The token PUT answers 403, GETs work without a token (IMDSv1 only). */
  | 'no-token'
  /** The token PUT never answers (response dropped by the hop limit); GETs without a token get 401. */
  | 'hop-limit'
  /** No instance profile: 404 under iam/security-credentials/. */
  | 'no-role';
export interface ImdsFault {
  mode: ImdsFaultMode;
}

export interface ImdsRequest {
  method: string;
  path: string;
  /** The X-aws-ec2-metadata-token header: absent, one we issued, or anything else. */
  token: 'none' | 'valid' | 'invalid';
  /** The HTTP status answered; undefined when the request was left unanswered (hop-limit). */
  status?: number;
  time: number;
}

export interface ImdsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

export interface Imds {
  url: string;
  credentials: ImdsCredentials;
  setFault(f: ImdsFault): void;
  /** What GET /latest/user-data serves (404 when undefined, as EC2 does for an instance without). */
  setUserData(data: string | undefined): void;
  requests: ImdsRequest[];
  close(): Promise<void>;
}

const TOKEN_PATH = '/latest/api/token';
const CREDS_PATH = '/latest/meta-data/iam/security-credentials/';
const hex = (bytes: number): string => randomBytes(bytes).toString('hex');
/** IMDS writes timestamps without milliseconds. */
const isoSeconds = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * Test-only credentials. The key id starts like a session key (ASIA) but is deliberately not
 * ASIA + 16 [A-Z2-7] characters, so secret scanners never mistake a log of it for a real key.
 */
function fakeCredentials(): ImdsCredentials {
  return {
    accessKeyId: `ASIATESTBED-${hex(4)}`,
    secretAccessKey: `testbed-secret-${hex(12)}`,
    sessionToken: `testbed-session-${randomBytes(48).toString('base64url')}`,
  };
}

export async function startImds(opts: {
  region: string;
  accountId?: string;
  instanceId?: string;
  roleName?: string;
  userData?: string;
}): Promise<Imds> {
  const accountId = opts.accountId ?? '111122223333';
  const instanceId = opts.instanceId ?? `i-0${hex(8).slice(0, 16)}`;
  const roleName = opts.roleName ?? 'testbed-node-role';
  const az = `${opts.region}a`;
  const credentials = fakeCredentials();
  const tokens = new Set<string>();
  const requests: ImdsRequest[] = [];
  const sockets = new Set<Socket>();
  const hung = new Set<Socket>();
  let fault: ImdsFault = { mode: 'ok' };
  let userData = opts.userData;

  const identity = {
    accountId,
    architecture: 'x86_64',
    availabilityZone: az,
    billingProducts: null,
    devpayProductCodes: null,
    marketplaceProductCodes: null,
    imageId: 'ami-0testbed00000000',
    instanceId,
    instanceType: 'm5.large',
    kernelId: null,
    pendingTime: isoSeconds(Date.now()),
    privateIp: '10.0.0.10',
    ramdiskId: null,
    region: opts.region,
    version: '2017-09-30',
  };

  const metadata = (path: string): string | undefined => {
    const now = Date.now();
    const paths: Record<string, string> = {
      '/latest/meta-data/placement/region': opts.region,
      '/latest/meta-data/placement/availability-zone': az,
      '/latest/meta-data/instance-id': instanceId,
      '/latest/dynamic/instance-identity/document': JSON.stringify(identity, null, 2),
      ...(userData !== undefined ? { '/latest/user-data': userData } : {}),
    };
    if (fault.mode !== 'no-role') {
      paths[CREDS_PATH] = roleName;
      paths[CREDS_PATH + roleName] = JSON.stringify(
        {
          Code: 'Success',
          LastUpdated: isoSeconds(now),
          Type: 'AWS-HMAC',
          AccessKeyId: credentials.accessKeyId,
          SecretAccessKey: credentials.secretAccessKey,
          Token: credentials.sessionToken,
          Expiration: isoSeconds(now + 6 * 3600_000),
        },
        null,
        2,
      );
    }
    return paths[path];
  };

  type Reply = [status: number, body: string, headers?: Record<string, string>];

  /** What IMDS answers under the current fault; undefined: no answer at all (hop-limit). */
  const reply = (req: IncomingMessage, path: string, token: ImdsRequest['token']): Reply | undefined => {
    if (req.method === 'PUT' && path === TOKEN_PATH) {
      if (fault.mode === 'hop-limit') return undefined;
      if (fault.mode === 'no-token') return [403, 'Forbidden'];
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return [400, 'Bad Request'];
      const t = `testbed-imds-${hex(16)}`;
      tokens.add(t);
      return [200, t, { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) }];
    }
    if (req.method !== 'GET') return [405, 'Method Not Allowed'];
    const v1Allowed = fault.mode === 'no-token';
    if (token !== 'valid' && !(v1Allowed && token === 'none')) return [401, 'Unauthorized'];
    const body = metadata(path);
    return body === undefined ? [404, 'Not Found'] : [200, body];
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0]!;
    const header = req.headers['x-aws-ec2-metadata-token'];
    const token = header === undefined ? 'none' : tokens.has(String(header)) ? 'valid' : 'invalid';
    const rec: ImdsRequest = { method: req.method ?? '', path, token, time: Date.now() };
    requests.push(rec);
    req.resume();
    const r = reply(req, path, token);
    if (!r) {
      hung.add(req.socket); // the token PUT lost to the hop limit: released when the fault ends
      return;
    }
    const [status, body, headers] = r;
    rec.status = status;
    res.writeHead(status, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
  };

  const server = createServer(handle);
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const dropConnections = (set: Set<Socket>): void => {
    for (const s of set) s.destroy();
    set.clear();
  };
  await listen(0);
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    credentials,
    requests,
    setUserData(data) {
      userData = data;
    },
    setFault(f) {
      const was = fault.mode;
      fault = f;
      // 'down' closes the listener (new connections are refused) and drops open ones; leaving it
      // listens again on the same port, before any request a caller starts afterwards can connect.
      // Keep-alive connections are otherwise left alone: dropping them makes a client that reuses
      // one fail with ECONNRESET, a fault of its own.
      if (f.mode === 'down' && was !== 'down') {
        server.close();
        dropConnections(sockets);
      } else if (f.mode !== 'down' && was === 'down') {
        listen(port).catch((err: unknown) =>
          console.error(`imds testbed: cannot listen again on ${port}:`, err),
        );
      }
      if (f.mode !== 'hop-limit') dropConnections(hung);
    },
    close() {
      dropConnections(sockets);
      if (!server.listening) return Promise.resolve();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
