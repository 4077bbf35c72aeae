import { describe, expect, it } from 'vitest';
import { normalizeRef, parseImageRef } from '../../src/core/image-ref.js';
import { planSandboxImage } from '../../src/core/sandbox-plan.js';
import { BootError } from '../../src/errors.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseImageRef / normalizeRef', () => {
  it.each([
    [
      '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10',
      '602401143452.dkr.ecr.us-west-2.amazonaws.com',
      'eks/pause',
      '3.10',
    ],
    ['127.0.0.1:5000/eks/pause', '127.0.0.1:5000', 'eks/pause', undefined],
    ['localhost/kubernetes/pause:latest', 'localhost', 'kubernetes/pause', 'latest'],
    ['registry.k8s.io/pause:3.9', 'registry.k8s.io', 'pause', '3.9'],
    ['busybox', 'docker.io', 'library/busybox', undefined],
    ['library/busybox:1', 'docker.io', 'library/busybox', '1'],
  ])('%s', (ref, host, repository, tag) => {
    expect(parseImageRef(ref)).toMatchObject({ host, repository, tag });
  });

  it('keeps digests', () => {
    expect(parseImageRef(`public.ecr.aws/eks-distro/kubernetes/pause@${D}`)).toMatchObject({
      digest: D,
      tag: undefined,
    });
  });

  it.each(['UPPER/case:1', 'a b', '', 'host/repo:bad tag'])('rejects %j', (ref) => {
    expect(parseImageRef(ref)).toBeUndefined();
  });

  it.each([
    ['localhost/kubernetes/pause', 'localhost/kubernetes/pause:latest'],
    ['busybox', 'docker.io/library/busybox:latest'],
    ['r.io/a:1', 'r.io/a:1'],
    [`r.io/a@${D}`, `r.io/a@${D}`],
  ])('normalizes %s → %s (containerd compares names verbatim)', (ref, want) =>
    expect(normalizeRef(ref)).toBe(want),
  );
});

describe('planSandboxImage', () => {
  const regional = '602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.10';
  const base = { region: 'eu-west-1', wanted: regional, explicit: false, fallbacks: [] as string[] };

  it('regional image first, then fallbacks, then the archive; ECR sources carry account and region', () => {
    const plan = planSandboxImage({
      ...base,
      configured: regional,
      fallbacks: ['public.ecr.aws/eks-distro/kubernetes/pause:3.10'],
      archive: '/etc/node-bootstrap/pause.tar',
    });
    expect(plan.target).toBe(regional);
    expect(plan.warning).toBeUndefined();
    expect(plan.sources).toEqual([
      { kind: 'registry', image: regional, ecr: { account: '602401143452', region: 'eu-west-1' } },
      { kind: 'registry', image: 'public.ecr.aws/eks-distro/kubernetes/pause:3.10' },
      { kind: 'archive', path: '/etc/node-bootstrap/pause.tar' },
    ]);
  });

  it("containerd's sandbox_image in another region's ECR is an error naming both regions (the wrong-region incident)", () => {
    const err = (() => {
      try {
        planSandboxImage({
          ...base,
          configured: '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10',
        });
      } catch (e) {
        return e as BootError;
      }
    })();
    expect(err).toBeInstanceOf(BootError);
    expect(err?.code).toBe('SANDBOX_IMAGE_MISMATCH');
    expect(err?.message).toMatch(/us-west-2's ECR but this node is in eu-west-1/);
    expect(err?.hint).toContain(regional);
  });

  it('a non-ECR configured sandbox image (e.g. a baked localhost image) is ensured under its own name, with a warning', () => {
    const plan = planSandboxImage({ ...base, configured: 'localhost/kubernetes/pause' });
    expect(plan.target).toBe('localhost/kubernetes/pause:latest');
    expect(plan.warning).toMatch(/ensuring localhost\/kubernetes\/pause:latest/);
    expect(plan.sources.map((s) => (s.kind === 'registry' ? s.image : s.path))).toEqual([
      'localhost/kubernetes/pause:latest',
      regional,
    ]);
  });

  it('the same image configured with or without an explicit tag is no mismatch', () => {
    const plan = planSandboxImage({ ...base, wanted: 'r.io/pause', configured: 'r.io/pause:latest' });
    expect(plan.warning).toBeUndefined();
    expect(plan.sources).toHaveLength(1);
  });
});
