/**
 * Proxies, end to end: the shipped bundle (`node-bootstrap run`) against real containerd 1.7, the
 * registry, the ECR API and IMDS emulators, and a real CONNECT proxy (test/testbed/proxy.ts) that logs
 * every tunnel. The ECR API is asked for by its real name (https://api.ecr.us-west-2.amazonaws.com,
 * no endpoint override): the proxy routes that name to a TLS front of the emulator, whose certificate
 * the child trusts through NODE_EXTRA_CA_CERTS. So a call that reaches the emulator without an
 * override went through the proxy, and the proxy's log names the ECR endpoint.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCriClient } from '../../src/adapters/cri.js';
import { startTestbed, type Testbed } from '../testbed/index.js';
import { createPki } from '../testbed/pki.js';
import { startProxy, startTlsFront, type TestProxy, type TlsFront } from '../testbed/proxy.js';
import {
  type BundleResult,
  ensureBuilt,
  explain,
  freshStateDir,
  leaks,
  runBundle,
  scenarioConfig,
  testbedSecrets,
} from './lib/run-bundle.js';

const REGION = 'us-west-2';
const ECR_API = `api.ecr.${REGION}.amazonaws.com`;
const SHOW = process.env.SHOW_FIGURES === '1';
const NODECONFIG = (proxy: string) => `MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="//"

--//
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
echo "pre-bootstrap"

--//
Content-Type: application/node.eks.aws

apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: testbed
    apiServerEndpoint: https://0123456789ABCDEF0123456789ABCDEF.gr7.${REGION}.eks.amazonaws.com
    certificateAuthority: dGVzdGJlZA==
    cidr: 172.20.0.0/16
  instance:
    environment:
      default:
        HTTPS_PROXY: ${proxy}
        NO_PROXY: 169.254.169.254,fd00:ec2::254,localhost,127.0.0.1,.${REGION}.eks.amazonaws.com

--//--
`;

let tb: Testbed;
let proxy: TestProxy;
let front: TlsFront;
let caFile: string;
let secrets: string[];
const figures: string[] = [];

beforeAll(async () => {
  await ensureBuilt();
  tb = await startTestbed({
    containerd: { version: '1.7' },
    config: { timeouts: { 'sandbox-image': '20s' } },
  });
  secrets = testbedSecrets(tb);
  const pki = await createPki(join(tb.dir, 'pki-ecr-api'), [ECR_API]);
  caFile = pki.caFile;
  front = await startTlsFront({
    cert: readFileSync(pki.certFile, 'utf8'),
    key: readFileSync(pki.keyFile, 'utf8'),
    to: new URL(tb.ecr!.url).host,
  });
  proxy = await startProxy({ routes: { [`${ECR_API}:443`]: front.address } });
}, 180_000);

afterAll(async () => {
  await Promise.all([proxy?.close(), front?.close()]);
  await tb?.stop();
  if (SHOW) console.log(figures.join('\n'));
});

beforeEach(async () => {
  // The pause image must be missing so that every run asks ECR for a token.
  const cri = createCriClient(tb.containerd!.socket);
  try {
    await cri.removeImage(tb.sandboxImage, AbortSignal.timeout(5_000)).catch(() => {});
  } finally {
    cri.close();
  }
  proxy.log.length = 0;
  tb.ecr!.requests.length = 0;
  tb.imds!.requests.length = 0;
  tb.imds!.setUserData(undefined);
});

/** The testbed environment with the ECR API at its real name (no override) and the test CA trusted. */
function env(over: Record<string, string>): Record<string, string> {
  const { AWS_ENDPOINT_URL_ECR: _, ...rest } = tb.env;
  return { ...rest, NODE_EXTRA_CA_CERTS: caFile, ...over };
}

async function run(label: string, e: Record<string, string>, config = tb.configFile): Promise<BundleResult> {
  const r = await runBundle('run', { config, stateDir: freshStateDir(tb), env: e });
  expect(leaks(r, secrets)).toEqual([]);
  figures.push(
    `${label}: exit ${r.code} in ${r.ms} ms; proxy log: ${proxy.lines().join(' | ') || '(empty)'}; ` +
      `IMDS requests ${tb.imds!.requests.length}; ECR API requests ${tb.ecr!.requests.length}\n  ${r.verdict}`,
  );
  return r;
}

const imdsPort = () => new URL(tb.imds!.url).port;

describe('node-bootstrap run behind a proxy', () => {
  it('HTTPS_PROXY in the unit environment: the ECR API call goes through the proxy, IMDS does not', async () => {
    const r = await run('HTTPS_PROXY from the environment', env({ HTTPS_PROXY: proxy.url, NO_PROXY: '' }));
    expect(r.code, explain(r)).toBe(0);
    expect(proxy.lines()).toEqual([`CONNECT ${ECR_API}:443 → ${front.address} 200`]);
    expect(tb.ecr!.requests.map((q) => q.target)).toEqual(['GetAuthorizationToken']);
    // IMDS answered (region, user data, the SDK's credentials) and none of it went through the proxy.
    expect(tb.imds!.requests.length).toBeGreaterThan(2);
    expect(proxy.log.some((e) => e.target.endsWith(`:${imdsPort()}`))).toBe(false);
    expect(r.phase('sandbox-image').facts).toMatchObject({
      proxy: `HTTPS_PROXY=${proxy.url} from the process environment (unit Environment=/EnvironmentFile=)`,
    });
    // NO_PROXY is empty: the run says what is missing and the line to set, and still succeeds.
    const warning = r.phase('sandbox-image').warnings.find((w) => w.includes('NO_PROXY'));
    expect(warning).toMatch(
      /does not cover 169\.254\.169\.254, fd00:ec2::254, localhost, 127\.0\.0\.1: add them, e\.g\. NO_PROXY=169\.254\.169\.254,fd00:ec2::254,localhost,127\.0\.0\.1,\.svc,\.cluster\.local$/,
    );
  });

  it('HTTPS_PROXY only in NodeConfig (IMDS user data, MIME multipart): applied before the ECR call', async () => {
    tb.imds!.setUserData(NODECONFIG(proxy.url));
    const r = await run('HTTPS_PROXY from NodeConfig user data', env({}));
    expect(r.code, explain(r)).toBe(0);
    expect(proxy.lines()).toEqual([`CONNECT ${ECR_API}:443 → ${front.address} 200`]);
    expect(tb.imds!.requests.some((q) => q.path === '/latest/user-data' && q.status === 200)).toBe(true);
    expect(r.phase('sandbox-image').facts.proxy).toMatch(
      /^HTTPS_PROXY=http:\/\/127\.0\.0\.1:\d+ from NodeConfig spec\.instance\.environment\.default \(IMDS \/latest\/user-data \(MIME multipart, 2 parts\)\)$/,
    );
    // NO_PROXY from the same NodeConfig covers IMDS, localhost and the cluster endpoint: no warning.
    expect(r.phase('sandbox-image').warnings.filter((w) => w.includes('NO_PROXY'))).toEqual([]);
  });

  it('NO_PROXY covering the ECR API host: nothing goes through the proxy', async () => {
    const r = await run(
      'NO_PROXY covers the ECR host',
      env({
        AWS_ENDPOINT_URL_ECR: `https://localhost:${front.port}`,
        HTTPS_PROXY: proxy.url,
        NO_PROXY: '169.254.169.254,fd00:ec2::254,localhost,127.0.0.1',
      }),
    );
    expect(r.code, explain(r)).toBe(0);
    expect(tb.ecr!.requests.map((q) => q.target)).toEqual(['GetAuthorizationToken']);
    expect(proxy.lines()).toEqual([]);
  });

  it('a dead proxy: the run fails naming the proxy and the ecr.api VPC endpoint', async () => {
    const dead = await startProxy();
    const url = dead.url;
    await dead.close(); // nothing listens there any more
    const config = scenarioConfig(tb, { timeouts: { 'sandbox-image': '6s' } });
    const r = await run('dead proxy', env({ HTTPS_PROXY: url }), config);
    expect(r.code, explain(r)).toBe(75);
    expect(r.verdict).toMatch(
      /^node-bootstrap: FAILED phase=sandbox-image code=(ECR_UNAVAILABLE|PHASE_TIMEOUT) /,
    );
    const said = r.stdout + r.stderr + r.timelineText;
    expect(said).toContain(
      `cannot reach ${ECR_API}:443 through the proxy ${url} (HTTPS_PROXY from the process environment`,
    );
    expect(said).toContain(`com.amazonaws.${REGION}.ecr.api`);
    expect(tb.ecr!.requests).toEqual([]);
  });

  it('a proxy that refuses the CONNECT (403): the run fails saying the proxy refused, not ECR', async () => {
    const strict = await startProxy({ deny: [`${ECR_API}:443`] });
    try {
      const config = scenarioConfig(tb, { timeouts: { 'sandbox-image': '6s' } });
      const r = await run(
        'proxy refuses CONNECT',
        env({ HTTPS_PROXY: strict.url, NO_PROXY: 'localhost' }),
        config,
      );
      expect(r.code, explain(r)).toBe(75);
      expect(strict.lines()[0]).toBe(`CONNECT ${ECR_API}:443 403`);
      figures.push(`  the refusing proxy's log: ${strict.lines().join(' | ')}`);
      expect(r.verdict).toMatch(
        /^node-bootstrap: FAILED phase=sandbox-image code=(ECR_UNAVAILABLE|PHASE_TIMEOUT) /,
      );
      const said = r.stdout + r.stderr + r.timelineText;
      expect(said).toContain(`the proxy ${strict.url} (HTTPS_PROXY from the process environment`);
      expect(said).toMatch(
        /answered HTTP 403 for api\.ecr\.us-west-2\.amazonaws\.com:443 \(CONNECT refused\)/,
      );
      expect(tb.ecr!.requests).toEqual([]);
    } finally {
      await strict.close();
    }
  });
});
