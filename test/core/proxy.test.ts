import { describe, expect, it } from 'vitest';
import {
  bypasses,
  noProxyVerdict,
  parseNoProxy,
  proxyFor,
  proxySettings,
  redactProxy,
} from '../../src/core/proxy.js';

const ENV = 'process environment';
const NC = 'NodeConfig';

describe('proxySettings', () => {
  it('takes each variable from the first source that sets it, upper case first', () => {
    const s = proxySettings([
      { source: ENV, vars: { https_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:1', NO_PROXY: '' } },
      {
        source: NC,
        vars: { HTTPS_PROXY: 'http://nodeconfig:1', NO_PROXY: 'localhost', HTTP_PROXY: 'http://h:2' },
      },
    ]);
    expect(s).toEqual({
      https: { value: 'http://upper:1', variable: 'HTTPS_PROXY', source: ENV },
      http: { value: 'http://h:2', variable: 'HTTP_PROXY', source: NC },
      noProxy: { value: 'localhost', variable: 'NO_PROXY', source: NC },
    });
  });
  it('a lower-case variable counts', () => {
    expect(proxySettings([{ source: ENV, vars: { https_proxy: 'proxy:3128' } }]).https?.variable).toBe(
      'https_proxy',
    );
  });
});

describe('NO_PROXY matching', () => {
  const entries = parseNoProxy(
    '169.254.169.254, [fd00:ec2::254],localhost,.eks.amazonaws.com,internal.example:8443,10.0.0.0/16,fd00::/8',
  );
  it.each([
    ['169.254.169.254', undefined, true],
    ['fd00:ec2::254', undefined, true],
    ['[fd00:ec2::254]', 80, true],
    ['localhost', 443, true],
    ['ABC.gr7.us-west-2.eks.amazonaws.com', 443, true],
    ['eks.amazonaws.com', 443, true],
    ['api.ecr.us-west-2.amazonaws.com', 443, false],
    ['internal.example', 8443, true],
    ['internal.example', 443, false],
    ['10.0.3.4', 443, true],
    ['10.1.0.1', 443, false],
    ['fd12::1', 443, true],
    ['notlocalhost', 443, false],
  ] as const)('%s:%s → direct %s', (host, port, direct) => {
    expect(bypasses(entries, host, port)).toBe(direct);
  });
  it('* sends everything direct', () => {
    expect(bypasses(parseNoProxy('*'), 'api.ecr.us-west-2.amazonaws.com', 443)).toBe(true);
  });
});

describe('proxyFor', () => {
  const s = proxySettings([
    { source: ENV, vars: { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: '.amazonaws.com.cn' } },
  ]);
  it.each([
    ['https://api.ecr.us-west-2.amazonaws.com', 'http://proxy:3128'],
    ['https://api.ecr.cn-north-1.amazonaws.com.cn', undefined],
    ['http://api.ecr.us-west-2.amazonaws.com', undefined], // no HTTP_PROXY
  ])('%s → %s', (url, proxy) => {
    expect(proxyFor(new URL(url), s)?.value).toBe(proxy);
  });
});

it('redactProxy drops credentials', () => {
  expect(redactProxy('http://user:s3cret@proxy:3128')).toBe('http://***@proxy:3128');
  expect(redactProxy('proxy:3128')).toBe('http://proxy:3128');
});

describe('noProxyVerdict', () => {
  const endpoint = 'https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com';
  const verdict = (noProxy: string | undefined, clusterEndpoint?: string) =>
    noProxyVerdict({
      settings: proxySettings([
        {
          source: ENV,
          vars: { HTTPS_PROXY: 'http://proxy:3128', ...(noProxy ? { NO_PROXY: noProxy } : {}) },
        },
      ]),
      ...(clusterEndpoint ? { clusterEndpoint } : {}),
    });

  it.each([
    [
      undefined,
      ['169.254.169.254', 'fd00:ec2::254', 'localhost', '127.0.0.1', '.us-west-2.eks.amazonaws.com'],
    ],
    ['169.254.169.254,localhost,127.0.0.1', ['fd00:ec2::254', '.us-west-2.eks.amazonaws.com']],
    ['169.254.169.254,fd00:ec2::254,localhost,127.0.0.1,.eks.amazonaws.com', []],
    ['*', []],
  ])('NO_PROXY=%s misses %j', (noProxy, missing) => {
    expect(verdict(noProxy, endpoint).missing.map((m) => m.entry)).toEqual(missing);
  });

  it('gives the line to set: the current value plus what is missing and recommended', () => {
    expect(verdict('169.254.169.254,localhost', endpoint).line).toBe(
      'NO_PROXY=169.254.169.254,localhost,fd00:ec2::254,127.0.0.1,.us-west-2.eks.amazonaws.com,.svc,.cluster.local',
    );
  });

  it('recommends .svc, .cluster.local and the VPC CIDR, never requires them', () => {
    const v = verdict('169.254.169.254,fd00:ec2::254,localhost,127.0.0.1');
    expect(v.missing).toEqual([]);
    expect(v.recommended.map((r) => r.entry)).toEqual(['.svc', '.cluster.local', '<VPC CIDR>']);
  });

  it('no proxy, nothing to check', () => {
    expect(noProxyVerdict({ settings: {} })).toEqual({
      proxied: false,
      missing: [],
      recommended: [],
      line: '',
    });
  });
});
