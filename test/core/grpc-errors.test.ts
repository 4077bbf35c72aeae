import { describe, expect, it } from 'vitest';
import { capabilities } from '../../src/core/containerd-version.js';
import { criVerdict } from '../../src/core/cri-status.js';
import { classifyCriError, classifyPullError } from '../../src/core/grpc-errors.js';

const IMG = '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10';
const URL = 'https://602401143452.dkr.ecr.us-west-2.amazonaws.com/v2/eks/pause/manifests/3.10';

// What containerd 1.6 and 1.7 really answer (see the README's troubleshooting table).
describe('classifyPullError', () => {
  it.each([
    [
      'wrong password (1.6)',
      2,
      `failed to pull and unpack image "${IMG}": failed to resolve reference "${IMG}": failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized`,
      'PULL_UNAUTHORIZED',
      false,
    ],
    [
      'wrong password (1.7)',
      2,
      `failed to resolve reference "${IMG}": unexpected status from HEAD request to ${URL}: 401 Unauthorized`,
      'PULL_UNAUTHORIZED',
      false,
    ],
    [
      'no credentials (1.7)',
      2,
      `failed to resolve reference "${IMG}": pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials`,
      'PULL_UNAUTHORIZED',
      false,
    ],
    [
      'registry down',
      2,
      `failed to resolve reference "${IMG}": failed to do request: Head "${URL}": dial tcp 127.0.0.1:5000: connect: connection refused`,
      'PULL_NETWORK',
      true,
    ],
    [
      'unknown tag',
      5,
      `failed to pull and unpack image "${IMG}": failed to resolve reference "${IMG}": ${IMG}: not found`,
      'PULL_NOT_FOUND',
      false,
    ],
    [
      'untrusted CA',
      2,
      `failed to resolve reference "${IMG}": failed to do request: Head "${URL}": tls: failed to verify certificate: x509: certificate signed by unknown authority`,
      'PULL_TLS_UNTRUSTED',
      false,
    ],
    [
      'invalid reference',
      2,
      'failed to pull and unpack image "x": failed to parse image reference "Bad:": invalid reference format',
      'PULL_BAD_REFERENCE',
      false,
    ],
    [
      'TLS handshake timeout',
      2,
      `failed to resolve reference "${IMG}": failed to do request: Head "${URL}": net/http: TLS handshake timeout`,
      'PULL_NETWORK',
      true,
    ],
    ['HTTP never answers', 4, 'context deadline exceeded', 'PULL_NETWORK', true],
    [
      'throttled by the registry',
      2,
      `unexpected status from HEAD request to ${URL}: 429 Too Many Requests`,
      'PULL_NETWORK',
      true,
    ],
    [
      'registry 5xx',
      2,
      `unexpected status from HEAD request to ${URL}: 503 Service Unavailable`,
      'PULL_NETWORK',
      true,
    ],
    ['CRI not initialized yet', 2, 'server is not initialized yet', 'CRI_NOT_READY', true],
    ['anything else', 2, 'failed to extract layer: no space left on device', 'PULL_FAILED', true],
  ])('%s → %s', (_case, code, details, want, retryable) => {
    const e = classifyPullError({ code, details }, IMG);
    expect(e.code).toBe(want);
    expect(e.retryable).toBe(retryable);
    expect(e.message).toContain(details);
  });
});

describe('classifyCriError', () => {
  it.each([
    [12, 'unknown service runtime.v1.RuntimeService', 'CRI_UNIMPLEMENTED', false],
    [
      14,
      'No connection established. Last error: connect ENOENT /run/containerd/containerd.sock',
      'CRI_NOT_READY',
      true,
    ],
    [14, 'Connection dropped', 'CRI_NOT_READY', true],
    [2, 'server is not initialized yet', 'CRI_NOT_READY', true],
  ])('gRPC %i %s → %s', (code, details, want, retryable) => {
    const e = classifyCriError({ code, details }, '/run/containerd/containerd.sock');
    expect(e.code).toBe(want);
    expect(e.retryable).toBe(retryable);
  });

  it('the UNIMPLEMENTED fix says how to enable the CRI plugin', () => {
    expect(classifyCriError({ code: 12, details: 'x' }, '/s').hint).toMatch(/disabled_plugins.*config\.toml/);
  });
});

describe('criVerdict', () => {
  const rt = (status: boolean, reason = '', message = '') => ({
    type: 'RuntimeReady',
    status,
    reason,
    message,
  });
  const net = (status: boolean) => ({
    type: 'NetworkReady',
    status,
    reason: 'NetworkPluginNotReady',
    message: 'cni plugin not initialized',
  });

  it('ready on RuntimeReady alone: NetworkReady stays false until the CNI runs after kubelet', () => {
    expect(criVerdict([rt(true), net(false)])).toMatchObject({ ready: true, networkReady: false });
  });
  it('not ready with the reason when RuntimeReady is false or missing', () => {
    expect(criVerdict([rt(false, 'RuntimeNotReady', 'shim down'), net(true)]).reason).toBe(
      'RuntimeReady=false: RuntimeNotReady: shim down',
    );
    expect(criVerdict([net(true)])).toMatchObject({
      ready: false,
      reason: 'CRI Status reports no RuntimeReady condition',
    });
  });
  it("reads containerd's sandboxImage from verbose info, tolerating junk", () => {
    expect(
      criVerdict([rt(true)], { config: JSON.stringify({ sandboxImage: 'r.io/pause:3.10' }) }).sandboxImage,
    ).toBe('r.io/pause:3.10');
    expect(criVerdict([rt(true)], { config: '{not json' }).sandboxImage).toBeUndefined();
  });
});

describe('containerd capabilities', () => {
  it.each([
    ['1.6.20~ds1', false, false, false],
    ['v1.7.2', false, false, false],
    ['1.7.3', true, false, false],
    ['1.7.10', true, true, false],
    ['1.7.20', true, true, true],
    ['1.7.24~ds1', true, true, true],
    ['2.0.0', true, true, true],
    ['garbage', false, false, false],
  ])(
    '%s: pins sandbox %s, pins labelled %s, no resolv.conf fallback %s',
    (v, sandbox, labelled, noFallback) => {
      expect(capabilities(v)).toEqual({
        version: v,
        pinsSandboxImage: sandbox,
        pinsLabelledImages: labelled,
        noResolvConfFallback: noFallback,
      });
    },
  );
});

describe('classifyPullError: a registry that cannot be reached names the VPC endpoints', () => {
  it('an ECR registry: ecr.dkr and the S3 gateway, and containerd’s own proxy', () => {
    const img = '602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.10';
    const e = classifyPullError(
      {
        code: 2,
        details: `failed to do request: Head "https://602401143452.dkr.ecr.eu-west-1.amazonaws.com/v2/eks/pause/manifests/3.10": dial tcp 52.0.0.1:443: i/o timeout`,
      },
      img,
    );
    expect(e.code).toBe('PULL_NETWORK');
    expect(e.hint).toMatch(
      /com\.amazonaws\.eu-west-1\.ecr\.dkr interface endpoint and the com\.amazonaws\.eu-west-1\.s3 gateway endpoint/,
    );
    expect(e.hint).toMatch(/containerd pulls through HTTPS_PROXY in its own unit environment/);
  });
  it('another registry keeps the general hint', () => {
    const e = classifyPullError(
      { code: 2, details: 'dial tcp 10.0.0.1:443: connect: connection refused' },
      'registry.example.com/pause:3.10',
    );
    expect(e).toMatchObject({ code: 'PULL_NETWORK', hint: expect.stringMatching(/ecr\.dkr and S3 gateway/) });
  });
});
