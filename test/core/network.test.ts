/** The node's proxy settings as `run` and `check` gather them: real files in a temporary root. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createNodeFiles } from '../../src/adapters/node-files.js';
import { containerdProxy, networkWarnings, readNetwork } from '../../src/commands/network.js';
import { loadConfig } from '../../src/config.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'nb-net-'));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}
const UNIT = '[Unit]\nDescription=containerd\n[Service]\nExecStart=/usr/bin/containerd\n';

describe('containerdProxy: what containerd.service will have in its environment', () => {
  it.each([
    ['no proxy anywhere', {}, undefined],
    [
      'a drop-in with Environment=',
      {
        '/etc/systemd/system/containerd.service.d/http-proxy.conf':
          '[Service]\nEnvironment="HTTPS_PROXY=http://proxy:3128" "NO_PROXY=localhost"\n',
      },
      [
        'HTTPS_PROXY',
        'http://proxy:3128',
        'containerd.service (/etc/systemd/system/containerd.service.d/http-proxy.conf)',
      ],
    ],
    [
      'an EnvironmentFile= (lower case)',
      {
        '/etc/systemd/system/containerd.service.d/env.conf': '[Service]\nEnvironmentFile=-/etc/proxy.env\n',
        '/etc/proxy.env': 'https_proxy=http://proxy:3128\n',
      },
      ['https_proxy', 'http://proxy:3128', 'containerd.service (/etc/proxy.env)'],
    ],
    [
      "systemd's DefaultEnvironment= (what NodeConfig's environment.default becomes)",
      {
        '/etc/systemd/system.conf.d/environment.conf':
          '[Manager]\nDefaultEnvironment="HTTPS_PROXY=http://proxy:3128"\n',
      },
      [
        'HTTPS_PROXY',
        'http://proxy:3128',
        'DefaultEnvironment= (/etc/systemd/system.conf.d/environment.conf)',
      ],
    ],
  ])('%s', (_name, files, want) => {
    const root = tree({ '/usr/lib/systemd/system/containerd.service': UNIT, ...files });
    const c = containerdProxy(createNodeFiles(root), 'containerd.service');
    expect(c.unitFound).toBe(true);
    if (!want) expect(c.settings.https).toBeUndefined();
    else expect(c.settings.https).toEqual({ variable: want[0], value: want[1], source: want[2] });
  });
});

describe('readNetwork: the process environment, then the NodeConfig file', () => {
  const userData = (env: string) =>
    [
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="//"',
      '',
      '--//',
      'Content-Type: application/node.eks.aws',
      '',
      'apiVersion: node.eks.aws/v1alpha1',
      'kind: NodeConfig',
      'spec:',
      '  cluster:',
      '    apiServerEndpoint: https://ABC.gr7.eu-west-1.eks.amazonaws.com',
      '  instance:',
      '    environment:',
      env,
      '--//--',
    ].join('\n');
  const config = (ud: string, env: NodeJS.ProcessEnv = {}) => {
    const root = tree({ '/user-data': ud, '/config.yaml': '' });
    writeFileSync(join(root, 'config.yaml'), `nodeConfig:\n  file: ${join(root, 'user-data')}\n`);
    return loadConfig({ file: join(root, 'config.yaml'), env });
  };
  const never = new AbortController().signal;

  it('NodeConfig fills what the environment does not set; the cluster endpoint joins the NO_PROXY verdict', async () => {
    const cfg = config(
      userData('      default:\n        HTTPS_PROXY: http://nc-proxy:3128\n        NO_PROXY: localhost'),
      { NO_PROXY: '169.254.169.254,fd00:ec2::254,localhost,127.0.0.1' },
    );
    const n = await readNetwork(cfg, undefined, never);
    expect(n.settings.https).toMatchObject({
      value: 'http://nc-proxy:3128',
      source: expect.stringMatching(
        /^NodeConfig spec\.instance\.environment\.default \(\/.*user-data \(MIME multipart, 1 part\)\)$/,
      ),
    });
    expect(n.settings.noProxy).toMatchObject({
      value: '169.254.169.254,fd00:ec2::254,localhost,127.0.0.1',
      source: expect.stringMatching(/^the process environment/),
    });
    expect(n.verdict.missing.map((m) => m.entry)).toEqual(['.eu-west-1.eks.amazonaws.com']);
    expect(networkWarnings(n)).toEqual([
      expect.stringMatching(
        /does not cover \.eu-west-1\.eks\.amazonaws\.com: add them, e\.g\. NO_PROXY=169\.254\.169\.254,fd00:ec2::254,localhost,127\.0\.0\.1,\.eu-west-1\.eks\.amazonaws\.com,\.svc,\.cluster\.local$/,
      ),
    ]);
  });

  it('a NodeConfig that does not parse is a warning naming the part and key, never an error', async () => {
    const cfg = config(userData('      default: [HTTPS_PROXY=http://x]'));
    const n = await readNetwork(cfg, undefined, never);
    expect(n.settings).toEqual({});
    expect(networkWarnings(n)).toEqual([
      expect.stringMatching(
        /user-data, application\/node\.eks\.aws part 1: spec\.instance\.environment\.default: expected a map/,
      ),
    ]);
  });

  it('a proxy value that is not a URL is ignored, and said', async () => {
    const cfg = config(userData('      default: {}'), { HTTPS_PROXY: 'ftp://proxy:21' });
    const n = await readNetwork(cfg, undefined, never);
    expect(n.settings.https).toBeUndefined();
    expect(n.problems).toEqual([
      expect.stringMatching(
        /^HTTPS_PROXY from the process environment .* is not an http:\/\/ or https:\/\/ proxy URL/,
      ),
    ]);
  });
});
