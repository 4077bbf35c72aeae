import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { environmentFor, parseUserData } from '../../src/core/nodeconfig.js';

const WHERE = 'IMDS /latest/user-data';
const NODECONFIG = `apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: demo
    apiServerEndpoint: https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com
    certificateAuthority: Y2VydA==
    cidr: 172.20.0.0/16
  instance:
    environment:
      default:
        HTTPS_PROXY: http://proxy.internal:3128
        NO_PROXY: 169.254.169.254,localhost
      containerd:
        HTTPS_PROXY: http://pull-proxy.internal:3128
`;

/** User data as Karpenter and managed node groups send it: a shell part, then the NodeConfig part. */
const mime = (...parts: [type: string, body: string][]) =>
  [
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="//"',
    '',
    ...parts.flatMap(([type, body]) => ['--//', `Content-Type: ${type}`, '', body]),
    '--//--',
    '',
  ].join('\n');

describe('parseUserData', () => {
  it('reads cluster endpoint and environment from a MIME multipart NodeConfig part', async () => {
    const r = await parseUserData(
      mime(
        ['text/x-shellscript; charset="us-ascii"', '#!/bin/bash\necho hi'],
        ['application/node.eks.aws', NODECONFIG],
      ),
      WHERE,
    );
    expect(r.errors).toEqual([]);
    expect(r.kind).toBe('MIME multipart, 2 parts');
    expect(r.nodeConfig).toEqual({
      apiServerEndpoint: 'https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com',
      serviceCidr: '172.20.0.0/16',
      environment: {
        default: { HTTPS_PROXY: 'http://proxy.internal:3128', NO_PROXY: '169.254.169.254,localhost' },
        containerd: { HTTPS_PROXY: 'http://pull-proxy.internal:3128' },
      },
      documents: [`${WHERE}, application/node.eks.aws part 1`],
    });
    expect(environmentFor(r.nodeConfig, 'containerd.service').HTTPS_PROXY).toBe(
      'http://pull-proxy.internal:3128',
    );
    expect(environmentFor(r.nodeConfig, 'node-bootstrap').HTTPS_PROXY).toBe('http://proxy.internal:3128');
  });

  it('merges several NodeConfig parts in order: later values win, maps merge', async () => {
    const second = `apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  instance:
    environment:
      default:
        NO_PROXY: 169.254.169.254,fd00:ec2::254,localhost,127.0.0.1
`;
    const r = await parseUserData(
      mime(['application/node.eks.aws', NODECONFIG], ['application/node.eks.aws', second]),
      WHERE,
    );
    expect(r.nodeConfig?.environment.default).toEqual({
      HTTPS_PROXY: 'http://proxy.internal:3128',
      NO_PROXY: '169.254.169.254,fd00:ec2::254,localhost,127.0.0.1',
    });
    expect(r.nodeConfig?.documents).toHaveLength(2);
  });

  it('reads base64 parts, plain YAML, JSON and gzip user data', async () => {
    const b64 = [
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="BOUNDARY"',
      '',
      '--BOUNDARY',
      'Content-Type: application/node.eks.aws',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from(NODECONFIG).toString('base64'),
      '--BOUNDARY--',
    ].join('\r\n');
    for (const data of [
      b64,
      NODECONFIG,
      JSON.stringify({
        apiVersion: 'node.eks.aws/v1alpha1',
        kind: 'NodeConfig',
        spec: { cluster: { apiServerEndpoint: 'https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com' } },
      }),
      gzipSync(NODECONFIG),
    ]) {
      const r = await parseUserData(data, WHERE);
      expect(r.errors).toEqual([]);
      expect(r.nodeConfig?.apiServerEndpoint).toBe(
        'https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com',
      );
    }
  });

  it.each([
    ['a shell script', '#!/bin/bash\n/etc/eks/bootstrap.sh demo\n', 'shell script'],
    ['cloud-config', '#cloud-config\nruncmd: []\n', '#cloud-config'],
    ['empty', '', 'empty'],
  ])('%s holds no NodeConfig', async (_name, data, kind) => {
    const r = await parseUserData(data, WHERE);
    expect(r).toEqual({ errors: [], kind });
  });

  it.each([
    [
      'a YAML syntax error',
      'apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster: [unclosed\n',
      /application\/node\.eks\.aws part 1: YAML syntax error at line \d+/,
    ],
    [
      'a wrong apiVersion',
      'apiVersion: node.eks.aws/v1beta9\nkind: NodeConfig\n',
      /part 1: apiVersion: expected node\.eks\.aws\/v1alpha1, found "node\.eks\.aws\/v1beta9"/,
    ],
    [
      'an endpoint that is not a URL',
      'apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    apiServerEndpoint: not a url\n',
      /part 1: spec\.cluster\.apiServerEndpoint: expected a URL/,
    ],
    [
      'an environment that is a list',
      'apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  instance:\n    environment:\n      default: [HTTPS_PROXY=x]\n',
      /part 1: spec\.instance\.environment\.default: expected a map of variable name to value/,
    ],
    [
      'a variable that is an object',
      'apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  instance:\n    environment:\n      default:\n        HTTPS_PROXY: {host: x}\n',
      /part 1: spec\.instance\.environment\.default\.HTTPS_PROXY: expected a string value/,
    ],
  ])('names the part and the key: %s', async (_name, doc, message) => {
    const r = await parseUserData(mime(['application/node.eks.aws', doc]), WHERE);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(message);
    expect(r.errors[0]!.startsWith(WHERE)).toBe(true);
  });
});
