/**
 * The ECR and IMDS adapters against the REAL AWS SDK and our emulators (test/testbed), reached the
 * standard way: AWS_ENDPOINT_URL_ECR and AWS_EC2_METADATA_SERVICE_ENDPOINT. The SDK's default chain
 * finds the instance-profile credentials the IMDS emulator generated; the ECR emulator checks that
 * requests are signed with exactly those. Vitest runs this file in its own forked worker; the
 * environment is replaced in beforeAll and restored in afterAll.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { chmod, chown, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEcr, type EcrOptions } from '../../src/adapters/ecr.js';
import { createImds, ImdsError } from '../../src/adapters/imds.js';
import { createTokenCache } from '../../src/adapters/token-cache.js';
import { BootError } from '../../src/errors.js';
import { type EcrApi, startEcrApi } from '../testbed/ecr-api.js';
import { type Imds, startImds } from '../testbed/imds.js';

const REGION = 'us-west-2';
const REGISTRY = '602401143452';
const PASSWORD = `testbed-ecr-password-${'x'.repeat(40)}`;
const TOKEN_B64 = Buffer.from(`AWS:${PASSWORD}`).toString('base64');
const SHOW_FIGURES = process.env.SHOW_FIGURES === '1';

let imds: Imds;
let ecr: EcrApi;
let tmp: string;
const savedEnv = { ...process.env };
const figures: string[] = [];

beforeAll(async () => {
  imds = await startImds({ region: REGION, accountId: '111122223333', instanceId: 'i-0testbed0000001' });
  ecr = await startEcrApi({ password: PASSWORD, expectedAccessKeyId: imds.credentials.accessKeyId });
  tmp = mkdtempSync(join(tmpdir(), 'nb-aws-'));
  for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_ECR: ecr.url,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
    AWS_CONFIG_FILE: join(tmp, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(tmp, 'no-credentials'),
  });
});

afterAll(async () => {
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
  await Promise.all([imds?.close(), ecr?.close()]);
  rmSync(tmp, { recursive: true, force: true });
  if (SHOW_FIGURES) console.log(figures.join('\n'));
});

beforeEach(() => {
  imds.setFault({ mode: 'ok' });
  ecr.setFault({ mode: 'ok' });
  imds.requests.length = 0;
  ecr.requests.length = 0;
});

const ourImds = (timeoutMs = 300) => createImds({ endpoint: imds.url, timeoutMs });
const adapter = (o: Partial<EcrOptions> = {}) => createEcr({ region: REGION, imds: ourImds(), ...o });
const never = () => new AbortController().signal;

/** Runs p, records its duration, and returns what it threw (failing the test if it resolved). */
async function failure(label: string, p: Promise<unknown>): Promise<{ err: BootError; ms: number }> {
  const t0 = performance.now();
  const err = await p.then(
    () => expect.fail(`${label}: expected a rejection`),
    (e: unknown) => e,
  );
  const ms = Math.round(performance.now() - t0);
  expectNoSecret(err);
  figures.push(`${label}: ${ms} ms, ECR emulator requests ${ecr.requests.length}, IMDS ${imdsLog()}`);
  return { err: err as BootError, ms };
}
/** No thrown error may carry the ECR token, its password or the instance's secret key. */
function expectNoSecret(err: unknown): void {
  const text = err instanceof BootError ? JSON.stringify({ ...err.toJSON(), stack: err.stack }) : String(err);
  for (const secret of [PASSWORD, TOKEN_B64, imds.credentials.secretAccessKey, imds.credentials.sessionToken])
    expect(text).not.toContain(secret);
}
const imdsLog = (): string =>
  imds.requests.map((r) => `${r.method} ${r.path} [${r.token}] ${r.status ?? '-'}`).join(' | ');

describe('IMDS client (src/adapters/imds.ts)', () => {
  it('reads region and identity with one IMDSv2 token', async () => {
    const client = ourImds();
    expect(await client.region(never())).toBe(REGION);
    expect(await client.identity(never())).toEqual({
      region: REGION,
      accountId: '111122223333',
      instanceId: 'i-0testbed0000001',
      availabilityZone: `${REGION}a`,
      instanceType: 'm5.large',
    });
    expect(await client.role(never())).toBe('testbed-node-role');
    expect(imds.requests.map((r) => `${r.method} ${r.path} ${r.token}`)).toEqual([
      'PUT /latest/api/token none',
      'GET /latest/meta-data/placement/region valid',
      'GET /latest/dynamic/instance-identity/document valid',
      'GET /latest/meta-data/iam/security-credentials/ valid',
    ]);
  });

  it.each([
    ['down', 'refused', /refused the connection \(ECONNREFUSED\)/, /HttpEndpoint=enabled/],
    ['no-token', 'token-refused', /PUT \/latest\/api\/token → 403\): IMDSv2 disabled/, /needs IMDSv2/],
    [
      'hop-limit',
      'token-timeout',
      /no answer within 300 ms: .*HttpPutResponseHopLimit=1 .*container/,
      /hop-limit 2/,
    ],
  ] as const)('%s → %s', async (mode, reason, message, hint) => {
    imds.setFault({ mode });
    const { err, ms } = await failure(`imds client, ${mode}`, ourImds().region(never()));
    expect(err).toBeInstanceOf(ImdsError);
    expect(err).toMatchObject({ code: 'IMDS_UNAVAILABLE', reason });
    expect(err.message).toMatch(message);
    expect(err.hint).toMatch(hint);
    expect(ms).toBeLessThan(mode === 'hop-limit' ? 600 : 200);
  });

  it('no instance profile: role() says so, region still works', async () => {
    imds.setFault({ mode: 'no-role' });
    const client = ourImds();
    expect(await client.region(never())).toBe(REGION);
    const { err } = await failure('imds client, no-role', client.role(never()));
    expect(err).toMatchObject({ reason: 'no-role', retryable: false });
    expect(err.message).toMatch(/^no instance profile/);
    expect(err.hint).toMatch(/AmazonEC2ContainerRegistryPullOnly/);
  });

  it('AWS_EC2_METADATA_DISABLED: fails at once, without a request', async () => {
    const { err } = await failure(
      'imds disabled',
      createImds({ endpoint: imds.url, disabled: true }).region(never()),
    );
    expect(err).toMatchObject({ reason: 'disabled', retryable: false });
    expect(err.message).toMatch(/AWS_EC2_METADATA_DISABLED/);
    expect(imds.requests).toHaveLength(0);
  });

  it("the caller's signal ends a hung token request promptly, with the signal's reason", async () => {
    imds.setFault({ mode: 'hop-limit' });
    const reason = new Error('shutdown');
    const { err, ms } = await failure(
      'imds client, abort',
      createImds({ endpoint: imds.url, timeoutMs: 5_000 }).region(abortAfter(100, reason)),
    );
    expect(err).toBe(reason);
    expect(ms).toBeLessThan(300);
  });
});

function abortAfter(ms: number, reason: unknown): AbortSignal {
  const c = new AbortController();
  setTimeout(() => c.abort(reason), ms);
  return c.signal;
}

describe('ECR adapter (src/adapters/ecr.ts) through the real SDK', () => {
  it('gets a token signed with the instance-profile credentials from IMDSv2', async () => {
    const t0 = Date.now();
    const token = await adapter().getAuthorizationToken(REGISTRY, never());
    figures.push(`ecr ok: ${Date.now() - t0} ms (first send, SDK loaded), IMDS ${imdsLog()}`);
    expect(token.username).toBe('AWS');
    expect(token.password).toBe(PASSWORD);
    expect(token.proxyEndpoint).toBe(`https://${REGISTRY}.dkr.ecr.${REGION}.amazonaws.com`);
    expect(token.expiresAt.getTime() - Date.now()).toBeGreaterThan(11.9 * 3600_000);
    expect(ecr.requests).toMatchObject([
      {
        target: 'GetAuthorizationToken',
        accessKeyId: imds.credentials.accessKeyId,
        region: REGION,
        registryIds: [REGISTRY],
      },
    ]);
    expect(imds.requests.map((r) => `${r.method} ${r.path} ${r.token} ${r.status}`)).toEqual([
      'PUT /latest/api/token none 200',
      'GET /latest/meta-data/iam/security-credentials/ valid 200',
      'GET /latest/meta-data/iam/security-credentials/testbed-node-role valid 200',
    ]);
  });

  it('an explicit endpoint wins over AWS_ENDPOINT_URL_ECR', async () => {
    const other = await startEcrApi({ password: PASSWORD });
    try {
      await adapter({ endpoint: other.url }).getAuthorizationToken(REGISTRY, never());
      expect(other.requests).toHaveLength(1);
      expect(ecr.requests).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  it('access denied → ECR_AUTH_FAILED, not retried', async () => {
    ecr.setFault({ mode: 'access-denied' });
    const { err } = await failure('ecr access-denied', adapter().getAuthorizationToken(REGISTRY, never()));
    expect(err).toMatchObject({ code: 'ECR_AUTH_FAILED', retryable: false });
    expect(err.message).toMatch(/not authorized to perform: ecr:GetAuthorizationToken/);
    expect(err.hint).toMatch(/AmazonEC2ContainerRegistryPullOnly/);
    expect(ecr.requests).toHaveLength(1);
  });

  it('credentials ECR does not recognise → ECR_AUTH_FAILED', async () => {
    const strict = await startEcrApi({ password: PASSWORD, expectedAccessKeyId: 'ASIATESTBED-someone-else' });
    try {
      const { err } = await failure(
        'ecr unrecognized',
        adapter({ endpoint: strict.url }).getAuthorizationToken(REGISTRY, never()),
      );
      expect(err).toMatchObject({ code: 'ECR_AUTH_FAILED', retryable: false });
      expect(err.message).toMatch(/UnrecognizedClientException/);
      expect(strict.requests).toHaveLength(1);
    } finally {
      await strict.close();
    }
  });

  it('throttled twice → the SDK retries and the third request succeeds', { timeout: 10_000 }, async () => {
    ecr.setFault({ mode: 'throttle', count: 2 });
    const t0 = Date.now();
    const token = await adapter().getAuthorizationToken(REGISTRY, never());
    figures.push(`ecr throttle x2: ok after ${Date.now() - t0} ms, ECR requests ${ecr.requests.length}`);
    expect(token.password).toBe(PASSWORD);
    expect(ecr.requests).toHaveLength(3);
  });

  it('server error → ECR_UNAVAILABLE after maxAttempts', async () => {
    ecr.setFault({ mode: 'server-error' });
    const { err } = await failure(
      'ecr server-error',
      adapter({ maxAttempts: 3 }).getAuthorizationToken(REGISTRY, never()),
    );
    expect(err).toMatchObject({ code: 'ECR_UNAVAILABLE', retryable: true });
    expect(err.message).toMatch(/^ECR API failed after 3 attempts: ServerException \(HTTP 500\)/);
    expect(ecr.requests).toHaveLength(3);
  });

  it('slow answer + abort → rejected promptly with the signal reason', async () => {
    ecr.setFault({ mode: 'slow', delayMs: 5_000 });
    const reason = new Error('phase deadline');
    const { err, ms } = await failure(
      'ecr slow + abort at 200 ms',
      adapter().getAuthorizationToken(REGISTRY, abortAfter(200, reason)),
    );
    expect(err).toBe(reason);
    expect(ms).toBeLessThan(500);
    expect(ecr.requests).toHaveLength(1);
  });

  it('an attempt slower than requestTimeoutMs is retried, then ECR_UNAVAILABLE', async () => {
    ecr.setFault({ mode: 'slow', delayMs: 2_000 });
    const { err } = await failure(
      'ecr slow beyond requestTimeout 200 ms, maxAttempts 2',
      adapter({ requestTimeoutMs: 200, maxAttempts: 2 }).getAuthorizationToken(REGISTRY, never()),
    );
    expect(err).toMatchObject({ code: 'ECR_UNAVAILABLE', retryable: true });
    expect(err.hint).toMatch(/ecr\.api VPC endpoint/);
    expect(ecr.requests).toHaveLength(2);
  });

  it('ECR API unreachable → ECR_UNAVAILABLE naming the ecr.api VPC endpoint', async () => {
    const { err } = await failure(
      'ecr refused, maxAttempts 2',
      adapter({ endpoint: await closedPortUrl(), maxAttempts: 2 }).getAuthorizationToken(REGISTRY, never()),
    );
    expect(err).toMatchObject({ code: 'ECR_UNAVAILABLE', retryable: true });
    expect(err.message).toMatch(/ECONNREFUSED.*after 2 attempts/);
    expect(err.hint).toMatch(/com\.amazonaws\.us-west-2\.ecr\.api VPC endpoint/);
  });

  it.each([
    ['down', 'IMDS_UNAVAILABLE', true, /refused the connection/, /HttpEndpoint=enabled/],
    ['hop-limit', 'IMDS_UNAVAILABLE', true, /HttpPutResponseHopLimit=1/, /hop-limit 2/],
    ['no-role', 'ECR_AUTH_FAILED', false, /no instance profile/, /associate-iam-instance-profile/],
  ] as const)(
    'IMDS %s → no credentials, classified %s with the cause',
    async (mode, code, retryable, message, hint) => {
      imds.setFault({ mode });
      const { err } = await failure(
        `ecr with imds ${mode}`,
        adapter().getAuthorizationToken(REGISTRY, never()),
      );
      expect(err).toMatchObject({ code, retryable });
      expect(err.message).toMatch(/^the AWS SDK found no credentials for the ECR API: /);
      expect(err.message).toMatch(message);
      expect(err.hint).toMatch(hint);
      expect(ecr.requests).toHaveLength(0);
    },
  );

  it('without an IMDS client to ask, no credentials still gets an actionable hint', async () => {
    imds.setFault({ mode: 'no-role' });
    const { err } = await failure(
      'ecr no-role, no probe',
      adapter({ imds: undefined }).getAuthorizationToken(REGISTRY, never()),
    );
    expect(err).toMatchObject({
      code: 'ECR_AUTH_FAILED',
      message: 'the AWS SDK found no credentials for the ECR API',
    });
    expect(err.hint).toMatch(/instance profile.*HttpPutResponseHopLimit >= 2/);
  });

  it('IMDSv1 only: the SDK silently falls back to token-less GETs and succeeds', async () => {
    imds.setFault({ mode: 'no-token' });
    await adapter().getAuthorizationToken(REGISTRY, never());
    expect(imds.requests.map((r) => `${r.method} ${r.token} ${r.status}`)).toEqual([
      'PUT none 403',
      'GET none 200',
      'GET none 200',
    ]);
    expect(ecr.requests[0]?.accessKeyId).toBe(imds.credentials.accessKeyId);
  });
});

async function closedPortUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return `http://127.0.0.1:${port}`;
}

describe('token cache (src/adapters/token-cache.ts)', () => {
  let clock = Date.now();
  const cacheIn = (dir: string) => createTokenCache({ dir, now: () => clock });
  const file = (dir: string) => join(dir, `ecr-token-${REGISTRY}.json`);
  const fetchToken = () => adapter().getAuthorizationToken(REGISTRY, never());

  beforeEach(() => {
    clock = Date.now();
  });

  it('writes 0600 in a 0700 dir, reuses before expiry, refetches after', async () => {
    const dir = join(tmp, 'state-a');
    const cache = cacheIn(dir);
    expect((await cache.getOrFetch(REGISTRY, fetchToken)).cached).toBe(false);
    expect((await stat(file(dir))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);

    const again = await cache.getOrFetch(REGISTRY, fetchToken);
    expect(again).toMatchObject({ cached: true, token: { password: PASSWORD, username: 'AWS' } });
    expect(ecr.requests).toHaveLength(1);

    clock = again.token.expiresAt.getTime() - 30 * 60_000 + 1; // inside the 30 min margin
    expect((await cache.getOrFetch(REGISTRY, fetchToken)).cached).toBe(false);
    expect(ecr.requests).toHaveLength(2);
  });

  it.each([
    ['corrupt', async (f: string) => writeFile(f, '{"registryId": "6024', { mode: 0o600 })],
    ['readable by others', async (f: string) => chmod(f, 0o644)],
    ['owned by another user', async (f: string) => chown(f, 65534, 65534)],
  ])('a cached file that is %s is ignored and rewritten 0600', async (label, spoil) => {
    const dir = join(tmp, `state-${label.replaceAll(' ', '-')}`);
    const cache = cacheIn(dir);
    await cache.getOrFetch(REGISTRY, fetchToken);
    await spoil(file(dir));
    expect(await cache.get(REGISTRY)).toBeUndefined();
    expect((await cache.getOrFetch(REGISTRY, fetchToken)).cached).toBe(false);
    const st = await stat(file(dir));
    expect([st.mode & 0o777, st.uid]).toEqual([0o600, process.getuid?.()]);
    expect(JSON.parse(await readFile(file(dir), 'utf8'))).toMatchObject({
      registryId: REGISTRY,
      password: PASSWORD,
    });
  });

  it('errors name the file, never the token', async () => {
    const notADir = join(tmp, 'plain-file');
    await writeFile(notADir, '');
    const token = await fetchToken();
    const { err } = await failure('cache write into a file', cacheIn(notADir).put(REGISTRY, token));
    expect(err).toMatchObject({ code: 'STATE_DIR_UNWRITABLE' });
    expect(err.message).toMatch(/cannot write the ECR token cache .*plain-file/);
    await expect(cacheIn(tmp).get('../../etc/passwd')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});
