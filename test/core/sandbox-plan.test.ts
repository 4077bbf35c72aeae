import { describe, expect, it } from 'vitest';
import { normalizeRef, parseImageRef } from '../../src/core/image-ref.js';
import { configuredSandbox, defaultArchive, planSandboxImage } from '../../src/core/sandbox-plan.js';
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

  it('registry mode, a baked localhost name configured: ensured under its own name with a warning; localhost is never pulled', () => {
    const plan = planSandboxImage({ ...base, configured: 'localhost/kubernetes/pause' });
    expect(plan.target).toBe('localhost/kubernetes/pause:latest');
    expect(plan.warning).toMatch(/ensuring localhost\/kubernetes\/pause:latest/);
    expect(plan.sources.map((s) => (s.kind === 'registry' ? s.image : s.path))).toEqual([
      regional,
      '/etc/eks/pause.tar',
    ]);
  });

  it('the same image configured with or without an explicit tag is no mismatch', () => {
    const plan = planSandboxImage({ ...base, wanted: 'r.io/pause', configured: 'r.io/pause:latest' });
    expect(plan.warning).toBeUndefined();
    expect(plan.sources.filter((s) => s.kind === 'registry')).toHaveLength(1);
  });
});

describe('planSandboxImage: sandboxImage.source', () => {
  const regional = '602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.10';
  const mirror = 'public.ecr.aws/eks-distro/kubernetes/pause:3.10';
  const base = { region: 'eu-west-1', wanted: regional, explicit: false, fallbacks: [mirror] };
  const names = (p: ReturnType<typeof planSandboxImage>) =>
    p.sources.map((s) => (s.kind === 'registry' ? s.image : `archive ${s.path}`));
  const present =
    (...paths: string[]) =>
    (p: string) =>
      paths.includes(p);

  it.each([
    // [name, configured, source, archive setting, archives on disk, target, sources, warns]
    [
      'auto, AL2023 (localhost name, /etc/eks/pause.tar baked): the archive, then the regional image, then fallbacks',
      'localhost/kubernetes/pause',
      'auto',
      undefined,
      ['/etc/eks/pause.tar'],
      'localhost/kubernetes/pause:latest',
      ['archive /etc/eks/pause.tar', regional, mirror],
      false,
    ],
    [
      'auto, localhost name but no archive on disk: straight to the registry (the name is tagged on)',
      'localhost/kubernetes/pause:latest',
      'auto',
      undefined,
      [],
      'localhost/kubernetes/pause:latest',
      [regional, mirror],
      false,
    ],
    [
      'auto, classic node (regional name configured), archive baked: the archive first',
      regional,
      'auto',
      undefined,
      ['/etc/node-bootstrap/pause.tar'],
      regional,
      ['archive /etc/node-bootstrap/pause.tar', regional, mirror],
      false,
    ],
    [
      'auto, sandboxImage.archive set: that file, whatever the name',
      'localhost/kubernetes/pause',
      'auto',
      '/opt/pause.tar',
      ['/opt/pause.tar'],
      'localhost/kubernetes/pause:latest',
      ['archive /opt/pause.tar', regional, mirror],
      false,
    ],
    [
      'auto, nothing configured by containerd: the regional image',
      undefined,
      'auto',
      undefined,
      [],
      regional,
      [regional, mirror],
      false,
    ],
    [
      'auto, another registry configured: warned, its own registry first',
      'registry.k8s.io/pause:3.8',
      'auto',
      undefined,
      [],
      'registry.k8s.io/pause:3.8',
      ['registry.k8s.io/pause:3.8', regional, mirror],
      true,
    ],
    [
      'archive: the archive only, even when it is missing (the phase says so)',
      'localhost/kubernetes/pause',
      'archive',
      undefined,
      [],
      'localhost/kubernetes/pause:latest',
      ['archive /etc/eks/pause.tar'],
      false,
    ],
    [
      'registry: the classic order, the archive last',
      regional,
      'registry',
      undefined,
      ['/etc/node-bootstrap/pause.tar'],
      regional,
      [regional, mirror, 'archive /etc/node-bootstrap/pause.tar'],
      false,
    ],
  ] as const)('%s', (_n, configured, source, archive, onDisk, target, sources, warns) => {
    const plan = planSandboxImage({
      ...base,
      ...(configured ? { configured } : {}),
      source,
      ...(archive ? { archive } : {}),
      exists: present(...onDisk),
    });
    expect(plan.target).toBe(target);
    expect(names(plan)).toEqual(sources);
    expect(plan.warning !== undefined).toBe(warns);
  });

  it('defaultArchive: /etc/eks/pause.tar for the EKS baked name only', () => {
    expect(defaultArchive('localhost/kubernetes/pause:latest')).toBe('/etc/eks/pause.tar');
    expect(defaultArchive('localhost/other/pause:latest')).toBe('/etc/node-bootstrap/pause.tar');
    expect(defaultArchive(regional)).toBe('/etc/node-bootstrap/pause.tar');
  });

  it("another region's ECR configured is an error in every mode", () => {
    for (const source of ['auto', 'archive', 'registry'] as const)
      expect(() =>
        planSandboxImage({
          ...base,
          source,
          configured: '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10',
        }),
      ).toThrow(/us-west-2's ECR but this node is in eu-west-1/);
  });
});

describe('configuredSandbox: the rendered file and the running containerd', () => {
  const where = 'sandbox_image under [plugins."io.containerd.grpc.v1.cri"] in /etc/containerd/config.toml';
  const file = (value: string) => ({ value, where });

  it.each([
    [
      'both agree (tag normalised)',
      file('localhost/kubernetes/pause'),
      'localhost/kubernetes/pause:latest',
      'localhost/kubernetes/pause:latest',
      `${where}, and CRI status`,
      false,
    ],
    [
      'only the file (CRI says nothing)',
      file('localhost/kubernetes/pause'),
      undefined,
      'localhost/kubernetes/pause',
      where,
      false,
    ],
    ['only CRI', undefined, 'registry.k8s.io/pause:3.8', 'registry.k8s.io/pause:3.8', 'CRI status', false],
    [
      'they differ: the running daemon wins, with a warning',
      file('localhost/kubernetes/pause'),
      'registry.k8s.io/pause:3.8',
      'registry.k8s.io/pause:3.8',
      'CRI status',
      true,
    ],
  ] as const)('%s', (_n, f, cri, image, from, warns) => {
    const c = configuredSandbox(f, cri);
    expect(c.image).toBe(image);
    expect(c.from).toBe(from);
    expect(c.warning !== undefined).toBe(warns);
    if (warns) expect(c.warning).toMatch(/runs on an older config \(restart containerd to apply the file\)/);
  });

  it('neither: nothing known', () => expect(configuredSandbox(undefined, undefined)).toEqual({}));
});
