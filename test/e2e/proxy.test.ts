/**
 * A node behind a proxy, booted: the shipped node-bootstrap.service gets HTTPS_PROXY/NO_PROXY from an
 * EnvironmentFile= (as an AMI's proxy set-up writes it), and the ECR API is asked for by its real
 * name (no AWS_ENDPOINT_URL_ECR): only the testbed proxy (test/testbed/proxy.ts, on the host network)
 * knows where that name leads, so a token that arrives went through it. IMDS is reached directly.
 * containerd reads the same file, and `node-bootstrap check` on the node says the proxy is complete.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunStatus } from '../../src/runner/status.js';
import { startTestbed, type Testbed } from '../testbed/index.js';
import { createPki } from '../testbed/pki.js';
import { startProxy, startTlsFront, type TestProxy, type TlsFront } from '../testbed/proxy.js';
import { bootSystemd, readInside } from './harness.js';
import { BUNDLE, REPO, STATE_DIR, show, workerNode } from './lib/boot-node.js';

const ECR_API = 'api.ecr.us-west-2.amazonaws.com';
const PROXY_ENV = '/etc/node-bootstrap/proxy.env';
const CA = '/etc/node-bootstrap/testbed-ecr-ca.crt';
const NO_PROXY = '169.254.169.254,fd00:ec2::254,localhost,127.0.0.1,.us-west-2.eks.amazonaws.com';

let tb: Testbed;
let proxy: TestProxy;
let front: TlsFront;
let caPem: string;

beforeAll(async () => {
  if (!existsSync(`${REPO}/dist/node-bootstrap.mjs`))
    throw new Error('dist/node-bootstrap.mjs is missing: run `npm run build` first');
  tb = await startTestbed({ containerd: false });
  const pki = await createPki(join(tb.dir, 'pki-ecr-api'), [ECR_API]);
  caPem = readFileSync(pki.caFile, 'utf8');
  front = await startTlsFront({
    cert: readFileSync(pki.certFile, 'utf8'),
    key: readFileSync(pki.keyFile, 'utf8'),
    to: new URL(tb.ecr!.url).host,
  });
  proxy = await startProxy({ routes: { [`${ECR_API}:443`]: front.address } });
}, 120_000);

afterAll(async () => {
  await Promise.all([proxy?.close(), front?.close()]);
  await tb?.stop();
});

describe('node-bootstrap.service behind a proxy', () => {
  it('EnvironmentFile= with HTTPS_PROXY: the ECR API call goes through the proxy, IMDS does not; check passes proxy', async () => {
    const o = await workerNode({ tb, name: 'proxy' });
    o.files = {
      ...o.files,
      [PROXY_ENV]: `HTTPS_PROXY=${proxy.url}\nNO_PROXY=${NO_PROXY}\n`,
      [CA]: caPem,
      '/etc/systemd/system/node-bootstrap.service.d/60-proxy.conf': [
        '[Service]',
        `EnvironmentFile=${PROXY_ENV}`,
        `Environment=NODE_EXTRA_CA_CERTS=${CA}`,
        // The ECR API by its real name: only the proxy can reach it.
        'UnsetEnvironment=AWS_ENDPOINT_URL_ECR',
        '',
      ].join('\n'),
      '/etc/systemd/system/containerd.service.d/60-proxy.conf': `[Service]\nEnvironmentFile=${PROXY_ENV}\n`,
    };
    const c = await bootSystemd({ ...o, bootTimeoutMs: 30_000 });
    try {
      const nb = await show(c, 'node-bootstrap.service');
      const status = JSON.parse(await readInside(c, `${STATE_DIR}/status.json`)) as RunStatus;
      const sandbox = status.phases.find((p) => p.name === 'sandbox-image');
      expect(nb.Result, JSON.stringify(status.phases.map((p) => [p.name, p.result, p.error?.message]))).toBe(
        'success',
      );
      console.log(
        `e2e proxy: proxy log: ${proxy.lines().join(' | ')}; IMDS requests ${tb.imds!.requests.length}`,
      );
      expect(proxy.lines()).toEqual([`CONNECT ${ECR_API}:443 → ${front.address} 200`]);
      expect(tb.ecr!.requests.map((r) => r.target)).toEqual(['GetAuthorizationToken']);
      expect(tb.imds!.requests.length).toBeGreaterThan(0);
      expect(proxy.log.some((e) => e.target.endsWith(`:${new URL(tb.imds!.url).port}`))).toBe(false);
      expect(sandbox?.facts.proxy).toBe(
        `HTTPS_PROXY=${proxy.url} from the process environment (unit Environment=/EnvironmentFile=)`,
      );
      expect(sandbox?.warnings.filter((w) => w.includes('NO_PROXY'))).toEqual([]);

      // check, with the unit's proxy variables: NO_PROXY complete, containerd has the proxy too.
      const r = await c.exec(
        [
          'env',
          `HTTPS_PROXY=${proxy.url}`,
          `NO_PROXY=${NO_PROXY}`,
          `AWS_EC2_METADATA_SERVICE_ENDPOINT=${tb.env.AWS_EC2_METADATA_SERVICE_ENDPOINT}`,
          '/usr/bin/node',
          BUNDLE,
          'check',
          '--json',
        ],
        { timeoutMs: 30_000 },
      );
      const report = JSON.parse(r.stdout) as { checks: { id: string; status: string; message: string }[] };
      const p = report.checks.find((x) => x.id === 'proxy');
      expect(p?.status, p?.message).toBe('pass');
      expect(p?.message).toMatch(
        new RegExp(
          `containerd\\.service: HTTPS_PROXY=${proxy.url.replace(/\./g, '\\.')} \\(containerd\\.service \\(${PROXY_ENV}\\)\\)`,
        ),
      );
    } finally {
      await c.stop();
    }
  });
});
