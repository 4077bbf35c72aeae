/** `check` verdicts from facts: pure tables (unit trees are real files, read through node-files). */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createNodeFiles } from '../../src/adapters/node-files.js';
import {
  type CheckResult,
  type CheckStatus,
  configCheck,
  containerdVersionCheck,
  diskCheck,
  ecrCheck,
  exitCode,
  formatReport,
  imdsCheck,
  type PausePinnedFacts,
  type ProxyFacts,
  pausePinnedCheck,
  proxyCheck,
  report,
  resolvConfCheck,
  type SandboxImageFacts,
  sandboxImageCheck,
  startupCacheCheck,
  unitsCheck,
} from '../../src/core/checks.js';
import { capabilities } from '../../src/core/containerd-version.js';
import { noProxyVerdict, proxySettings } from '../../src/core/proxy.js';
import type { Problem } from '../../src/core/resolv-conf.js';
import { loadUnit } from '../../src/core/unit-files.js';

const US_WEST_2 = '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10';
const EU_WEST_1 = '602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.10';
const status = (r: CheckResult) => r.status;

describe('config', () => {
  it.each<[Parameters<typeof configCheck>[0], CheckStatus, RegExp]>([
    [
      { ok: true, sources: ['/etc/node-bootstrap/config.yaml', '/etc/node-bootstrap/config.d/10.yaml'] },
      'pass',
      /valid: \/etc\/node-bootstrap\/config\.yaml, \/etc/,
    ],
    [{ ok: true, sources: [] }, 'pass', /every default applies/],
    [
      {
        ok: false,
        error: { code: 'CONFIG_INVALID', message: 'x.yaml: kubelet: unknown key(s) foo', hint: 'fix it' },
      },
      'fail',
      /^CONFIG_INVALID: x\.yaml: kubelet: unknown key\(s\) foo$/,
    ],
  ])('%j', (facts, want, re) => {
    const r = configCheck(facts);
    expect([r.status, r.message]).toEqual([want, expect.stringMatching(re)]);
  });
});

describe('resolv-conf', () => {
  const choice = {
    value: '/etc/resolv.conf',
    source: { kind: 'default' as const, where: "kubelet's default" },
  };
  const p = (severity: Problem['severity'], id: Problem['id']): Problem => ({
    id,
    severity,
    message: `${id}!`,
    fix: `fix ${id}`,
  });
  it.each<[string, Parameters<typeof resolvConfCheck>[0], CheckStatus, string, string]>([
    [
      'clean',
      { choice, problems: [], nameservers: ['10.0.0.2'], notes: [] },
      'pass',
      "/etc/resolv.conf (kubelet's default): nameserver 10.0.0.2",
      '',
    ],
    [
      'warnings only',
      {
        choice,
        problems: [p('warning', 'crlf'), p('warning', 'sortlist-ignored')],
        nameservers: [],
        notes: [],
      },
      'warn',
      'crlf!; sortlist-ignored!',
      'fix crlf',
    ],
    [
      'an error and a warning',
      { choice, problems: [p('warning', 'crlf'), p('error', 'empty')], nameservers: [], notes: [] },
      'fail',
      'empty! (and 1 warning)',
      'fix empty',
    ],
    [
      'kubelet config invalid',
      { error: { code: 'KUBELET_CONFIG_INVALID', message: 'bad', hint: 'fix config' } },
      'fail',
      'KUBELET_CONFIG_INVALID: bad',
      'fix config',
    ],
  ])('%s', (_name, facts, want, message, fix) => {
    expect(resolvConfCheck(facts)).toEqual({ id: 'resolv-conf', status: want, message, fix });
  });
});

describe('sandbox-image (the wrong-region incident)', () => {
  const base: SandboxImageFacts = {
    region: { value: 'us-west-2', source: { kind: 'default', where: 'IMDS' } },
    settings: { tag: '3.10', fips: false, dualstack: false },
  };
  it.each<[string, Partial<SandboxImageFacts>, CheckStatus, RegExp]>([
    [
      'containerd uses the regional image',
      { configured: { image: US_WEST_2, from: 'CRI status' } },
      'pass',
      /the regional image for region us-west-2 \(IMDS\)/,
    ],
    [
      'containerd points at another region’s ECR',
      { configured: { image: EU_WEST_1, from: '/etc/containerd/config.toml' } },
      'fail',
      /^SANDBOX_IMAGE_MISMATCH: containerd's sandbox_image .*eu-west-1.* this node is in us-west-2/,
    ],
    [
      'containerd uses upstream pause',
      { configured: { image: 'registry.k8s.io/pause:3.9', from: 'CRI status' } },
      'warn',
      /containerd's sandbox_image is registry\.k8s\.io\/pause:3\.9, not 602401143452\.dkr\.ecr\.us-west-2/,
    ],
    [
      'an explicit sandboxImage.image containerd also uses',
      {
        settings: { tag: '3.10', fips: false, dualstack: false, image: 'registry.example.com/pause:1' },
        configured: { image: 'registry.example.com/pause:1', from: 'CRI status' },
      },
      'pass',
      /the configured \(sandboxImage\.image\) image/,
    ],
    [
      "the EKS AMIs' baked pause under source auto (the modern layout): no warning",
      {
        settings: { tag: '3.10', fips: false, dualstack: false, source: 'auto' },
        configured: { image: 'localhost/kubernetes/pause', from: '/etc/containerd/config.toml' },
      },
      'pass',
      /^localhost\/kubernetes\/pause:latest: containerd's sandbox_image .*baked into the node image \(sandboxImage\.source auto: its archive, then 602401143452\.dkr\.ecr\.us-west-2/,
    ],
    [
      'the same baked name under source registry (the classic pull): reported',
      {
        settings: { tag: '3.10', fips: false, dualstack: false, source: 'registry' },
        configured: { image: 'localhost/kubernetes/pause:latest', from: '/etc/containerd/config.toml' },
      },
      'warn',
      /containerd's sandbox_image is localhost\/kubernetes\/pause:latest, not 602401143452/,
    ],
    [
      'region unknown',
      { region: undefined, regionWhy: 'IMDS refused' },
      'skip',
      /^skip: the node's region is unknown \(IMDS refused\)$/,
    ],
    [
      'containerd’s setting unknown',
      { configuredWhy: 'containerd is not running, and no /etc/containerd/config.toml' },
      'skip',
      /resolves to 602401143452\.dkr\.ecr\.us-west-2.*containerd is not running/,
    ],
    [
      'FIPS asked where ECR has none',
      {
        region: { value: 'eu-west-1', source: { kind: 'default', where: 'AWS_REGION' } },
        settings: { tag: '3.10', fips: true, dualstack: false },
      },
      'fail',
      /^CONFIG_INVALID: ECR has no FIPS endpoint in eu-west-1/,
    ],
  ])('%s', (_name, over, want, re) => {
    const r = sandboxImageCheck({ ...base, ...over });
    expect(r.status).toBe(want);
    expect(r.message).toMatch(re);
    if (want === 'fail') expect(r.fix).not.toBe('');
  });
});

describe('containerd-version', () => {
  it.each<[Parameters<typeof containerdVersionCheck>[0], CheckStatus, RegExp]>([
    [
      { up: false, why: 'containerd is not running (socket /run/containerd/containerd.sock does not exist)' },
      'skip',
      /^skip: containerd is not running/,
    ],
    [
      { up: true, version: '1.6.20~ds1' },
      'warn',
      /ignores the io\.cri-containerd\.pinned label.*still falls back/,
    ],
    [{ up: true, version: '1.7.5' }, 'warn', /pins only the image named by its own sandbox_image/],
    [
      { up: true, version: '1.7.10' },
      'pass',
      /honours the pinned label.*still falls back to the host resolv\.conf for an empty one \(removed in 1\.7\.20/,
    ],
    [
      { up: true, version: '1.7.24' },
      'pass',
      /honours the pinned label on any image \(1\.7\.10\+\); no host resolv\.conf fallback for an empty one \(1\.7\.20\+\)/,
    ],
    [{ up: true, version: 'v2.0.4' }, 'pass', /containerd v2\.0\.4: honours/],
    [{ up: true, version: 'devel' }, 'warn', /does not parse/],
  ])('%j', (facts, want, re) => {
    const r = containerdVersionCheck(facts);
    expect(r.status).toBe(want);
    expect(r.message).toMatch(re);
  });
});

describe('pause-pinned', () => {
  const at = (
    version: string,
    over: Partial<Exclude<PausePinnedFacts, { skip: string }>>,
  ): PausePinnedFacts => ({
    target: US_WEST_2,
    namespace: 'k8s.io',
    image: { id: `sha256:${'a'.repeat(64)}`, pinned: false },
    caps: capabilities(version),
    ...over,
  });
  it.each<[string, PausePinnedFacts, CheckStatus, RegExp]>([
    ['containerd down', { skip: 'containerd is not running' }, 'skip', /^skip: containerd is not running$/],
    ['absent', at('1.7.24', { image: null }), 'fail', /is not in containerd \(namespace k8s\.io\)/],
    [
      'present and pinned',
      at('1.7.24', { image: { id: `sha256:${'b'.repeat(64)}`, pinned: true }, label: 'pinned' }),
      'pass',
      /is present \(sha256:bbbbbbbbbbbb\) and pinned/,
    ],
    [
      '1.7.24, unpinned',
      at('1.7.24', {}),
      'fail',
      /present but not pinned: kubelet's image GC can delete it/,
    ],
    [
      '1.7.24, labelled but CRI says unpinned',
      at('1.7.24', { label: 'pinned' }),
      'fail',
      /not pinned although it carries the pinned label/,
    ],
    [
      '1.6, labelled: the label is ignored',
      at('1.6.20~ds1', { label: 'pinned' }),
      'warn',
      /containerd 1\.6\.20~ds1 ignores the label/,
    ],
    ['1.6, not labelled', at('1.6.20~ds1', {}), 'fail', /not labelled io\.cri-containerd\.pinned=pinned/],
    [
      '1.7.5 pins its own sandbox_image',
      at('1.7.5', { configured: US_WEST_2 }),
      'fail',
      /present but not pinned/,
    ],
    [
      '1.7.5, another image, labelled',
      at('1.7.5', { configured: EU_WEST_1, label: 'pinned' }),
      'warn',
      /ignores the label/,
    ],
  ])('%s', (_name, facts, want, re) => {
    const r = pausePinnedCheck(facts);
    expect(r.status).toBe(want);
    expect(r.message).toMatch(re);
    if (want === 'fail') expect(r.fix).toMatch(/node-bootstrap guard|node-bootstrap run/);
  });
});

describe('units (real unit trees)', () => {
  const roots: string[] = [];
  afterAll(() => {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  });
  const NB = `[Unit]\nAfter=containerd.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/bin/node-bootstrap run\n[Install]\nWantedBy=multi-user.target\n`;
  const GATE =
    '[Unit]\nAssertPathExists=/run/node-bootstrap/gates-passed\n[Service]\nEnvironmentFile=-/run/node-bootstrap/kubelet-resolv.env\n';
  const KUBELET = '[Service]\nExecStart=/usr/bin/kubelet $KUBELET_ARGS\n';
  const good: Record<string, string> = {
    '/etc/systemd/system/node-bootstrap.service': NB,
    '/etc/systemd/system/multi-user.target.wants/node-bootstrap.service':
      '->/etc/systemd/system/node-bootstrap.service',
    '/etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf': GATE,
    '/usr/lib/systemd/system/kubelet.service': KUBELET,
    '/usr/bin/node-bootstrap': '#!/usr/bin/env node\n',
  };
  function facts(tree: Record<string, string | null>, repair = false) {
    const root = mkdtempSync(join(tmpdir(), 'nb-units-'));
    roots.push(root);
    for (const [path, content] of Object.entries(tree)) {
      if (content === null) continue;
      mkdirSync(join(root, dirname(path)), { recursive: true });
      if (content.startsWith('->')) symlinkSync(content.slice(2), join(root, path));
      else writeFileSync(join(root, path), content);
    }
    const files = createNodeFiles(root);
    const nodeBootstrap = loadUnit(files, 'node-bootstrap.service');
    return {
      root,
      systemd: ['/etc/systemd/system', '/usr/lib/systemd/system'].some((d) => files.list(d) !== undefined),
      nodeBootstrap,
      kubelet: loadUnit(files, 'kubelet.service'),
      enabled: [
        {
          target: 'multi-user.target',
          linked: (files.list('/etc/systemd/system/multi-user.target.wants') ?? []).includes(
            'node-bootstrap.service',
          ),
        },
      ],
      binary: { path: '/usr/bin/node-bootstrap', exists: files.exists('/usr/bin/node-bootstrap') },
      marker: '/run/node-bootstrap/gates-passed',
      ...(repair ? { repairEnvFile: '/run/node-bootstrap/kubelet-resolv.env' } : {}),
    };
  }
  it.each<[string, Record<string, string | null>, CheckStatus, RegExp]>([
    [
      'installed, enabled, gated',
      good,
      'pass',
      /node-bootstrap\.service installed and enabled \(multi-user\.target\); kubelet\.service gated by \/etc\/systemd\/system\/kubelet\.service\.d\/10-node-bootstrap\.conf/,
    ],
    [
      'node-bootstrap not installed',
      {
        ...good,
        '/etc/systemd/system/node-bootstrap.service': null,
        '/etc/systemd/system/multi-user.target.wants/node-bootstrap.service': null,
      },
      'fail',
      /node-bootstrap\.service is not installed/,
    ],
    [
      'not enabled',
      { ...good, '/etc/systemd/system/multi-user.target.wants/node-bootstrap.service': null },
      'fail',
      /node-bootstrap\.service is not enabled \(no multi-user\.target\.wants\/ link\)/,
    ],
    [
      'masked',
      {
        ...good,
        '/etc/systemd/system/node-bootstrap.service': '->/dev/null',
        '/usr/lib/systemd/system/node-bootstrap.service': NB,
      },
      'fail',
      /node-bootstrap\.service is masked/,
    ],
    [
      'kubelet not installed',
      { ...good, '/usr/lib/systemd/system/kubelet.service': null },
      'fail',
      /kubelet\.service is not installed/,
    ],
    [
      'kubelet not gated',
      { ...good, '/etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf': null },
      'fail',
      /kubelet\.service is not gated on node-bootstrap/,
    ],
    [
      'a negated condition is no gate',
      {
        ...good,
        '/etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf':
          '[Unit]\nConditionPathExists=!/run/node-bootstrap/gates-passed\n',
      },
      'fail',
      /not gated/,
    ],
    [
      'a condition on the marker gates too',
      {
        ...good,
        '/etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf':
          '[Unit]\nConditionPathExists=/run/node-bootstrap/gates-passed\n',
      },
      'pass',
      /gated/,
    ],
    [
      'deadlock: kubelet After=node-bootstrap',
      {
        ...good,
        '/etc/systemd/system/kubelet.service.d/20-order.conf':
          '[Unit]\nAfter=node-bootstrap.service\nRequires=node-bootstrap.service\n',
      },
      'fail',
      /boot deadlock: node-bootstrap\.service \(Type=oneshot\) starts kubelet\.service and waits for its start job, while After=node-bootstrap\.service in \/etc\/systemd\/system\/kubelet\.service\.d\/20-order\.conf/,
    ],
    [
      'deadlock: node-bootstrap Before=kubelet',
      {
        ...good,
        '/etc/systemd/system/node-bootstrap.service': NB.replace(
          'After=containerd.service',
          'After=containerd.service\nBefore=kubelet.service',
        ),
      },
      'fail',
      /boot deadlock: .*Before=kubelet\.service in \/etc\/systemd\/system\/node-bootstrap\.service/,
    ],
    [
      'ordering with Type=simple does not deadlock',
      {
        ...good,
        '/etc/systemd/system/node-bootstrap.service': NB.replace('Type=oneshot', 'Type=simple'),
        '/etc/systemd/system/kubelet.service.d/20-order.conf': '[Unit]\nAfter=node-bootstrap.service\n',
      },
      'pass',
      /no ordering cycle/,
    ],
    [
      'an After= reset by a later drop-in',
      {
        ...good,
        '/etc/systemd/system/kubelet.service.d/20-order.conf': '[Unit]\nAfter=node-bootstrap.service\n',
        '/etc/systemd/system/kubelet.service.d/30-reset.conf': '[Unit]\nAfter=\n',
      },
      'pass',
      /no ordering cycle/,
    ],
    [
      'Requires= without ordering',
      {
        ...good,
        '/etc/systemd/system/kubelet.service.d/20-req.conf': '[Unit]\nRequires=node-bootstrap.service\n',
      },
      'warn',
      /Requires=node-bootstrap\.service in .*20-req\.conf: not a deadlock without ordering/,
    ],
    [
      'the binary is missing',
      { ...good, '/usr/bin/node-bootstrap': null },
      'fail',
      /runs \/usr\/bin\/node-bootstrap, which does not exist under /,
    ],
    ['no systemd at all', {}, 'skip', /^skip: no systemd unit directory under /],
  ])('%s', (_name, tree, want, re) => {
    const r = unitsCheck(facts(tree));
    expect(r.status, r.message).toBe(want);
    expect(r.message).toMatch(re);
    if (want === 'fail') expect(r.fix).not.toBe('');
  });

  it('observe mode (install --mode observe): a warning that says so, not the failures of an ungated kubelet', () => {
    const observeTree = {
      ...good,
      '/etc/systemd/system/multi-user.target.wants/node-bootstrap.service': null,
      '/etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf': '# no gate\n',
    };
    const r = unitsCheck({
      ...facts(observeTree),
      observe: { unit: 'node-bootstrap-observe.service', enabled: true },
    });
    expect(r.status).toBe('warn');
    expect(r.message).toMatch(
      /^observe mode: node-bootstrap-observe\.service is enabled and node-bootstrap\.service is not/,
    );
    expect(r.fix).toMatch(/install --mode nodeadm/);
    // Installed but not enabled: the usual verdicts.
    expect(
      unitsCheck({
        ...facts(observeTree),
        observe: { unit: 'node-bootstrap-observe.service', enabled: false },
      }).status,
    ).toBe('fail');
    // Both enabled: the boot unit is judged as usual.
    expect(
      unitsCheck({ ...facts(good), observe: { unit: 'node-bootstrap-observe.service', enabled: true } })
        .status,
    ).toBe('pass');
  });

  it('repair policy: kubelet must read node-bootstrap’s env file', () => {
    const gateOnly = '[Unit]\nAssertPathExists=/run/node-bootstrap/gates-passed\n';
    expect(status(unitsCheck(facts(good, true)))).toBe('pass');
    const r = unitsCheck(
      facts({ ...good, '/etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf': gateOnly }, true),
    );
    expect(r.status).toBe('warn');
    expect(r.fix).toBe(
      'add "EnvironmentFile=-/run/node-bootstrap/kubelet-resolv.env" under [Service] in kubelet.service.d/10-node-bootstrap.conf',
    );
  });
});

describe('disk (kubelet image GC thresholds)', () => {
  const GiB = 1024 ** 3;
  const at = (usedPct: number, high = 85, low = 80) =>
    diskCheck({
      dir: { value: '/var/lib/containerd', source: { kind: 'default', where: "containerd's default root" } },
      usage: { path: '/var/lib/containerd', totalBytes: 100 * GiB, availableBytes: (100 - usedPct) * GiB },
      high: {
        value: high,
        source: {
          kind: 'kubelet-config',
          where: 'imageGCHighThresholdPercent in /etc/kubernetes/kubelet/config.json',
        },
      },
      low: { value: low, source: { kind: 'default', where: "kubelet's default" } },
    });
  it.each<[number, number, number, CheckStatus, RegExp]>([
    [40, 85, 80, 'pass', /40% used, 60\.0 GiB free of 100\.0 GiB; kubelet's image GC starts at 85%/],
    [80, 85, 80, 'warn', /above kubelet's imageGCLowThresholdPercent 80: GC starts at 85%/],
    [
      85,
      85,
      80,
      'fail',
      /85% used.*at or above kubelet's imageGCHighThresholdPercent 85 \(imageGCHighThresholdPercent in \/etc\/kubernetes\/kubelet\/config\.json\): kubelet starts deleting images as soon as it runs, down to 80%/,
    ],
    [97, 85, 80, 'fail', /97% used/],
    [97, 100, 80, 'pass', /image GC is off \(imageGCHighThresholdPercent 100\)/],
    [60, 50, 40, 'fail', /at or above kubelet's imageGCHighThresholdPercent 50/],
  ])('%s%% used, high %s, low %s → %s', (used, high, low, want, re) => {
    const r = at(used, high, low);
    expect(r.status).toBe(want);
    expect(r.message).toMatch(re);
  });

  it('the fix says how much to free to get under the low threshold', () => {
    expect(at(90).fix).toMatch(/^free 10\.0 GiB or more on \/var\/lib\/containerd/);
  });

  it('kubelet’s integer arithmetic: 84.5% used counts as 85%', () => {
    // usagePercent = 100 - available*100/capacity, integer division: 15.5 free → 100 - 15 = 85.
    expect(at(84.5).status).toBe('fail');
  });

  it('no measurement: skip', () => {
    expect(
      diskCheck({
        dir: { value: '/x', source: { kind: 'default', where: 'd' } },
        high: { value: 85, source: { kind: 'default', where: 'd' } },
        low: { value: 80, source: { kind: 'default', where: 'd' } },
      }).status,
    ).toBe('skip');
  });
});

describe('imds', () => {
  it.each<[Parameters<typeof imdsCheck>[0], CheckStatus, RegExp]>([
    [{ disabled: true }, 'skip', /AWS_EC2_METADATA_DISABLED=true/],
    [
      {
        disabled: false,
        endpoint: 'http://169.254.169.254',
        error: {
          code: 'IMDS_UNAVAILABLE',
          message: 'token request got no answer within 1000 ms: HttpPutResponseHopLimit=1',
          hint: 'set HttpPutResponseHopLimit to 2',
        },
      },
      'fail',
      /HttpPutResponseHopLimit=1/,
    ],
    [
      {
        disabled: false,
        endpoint: 'http://x',
        region: 'us-west-2',
        instanceId: 'i-1',
        roleError: { code: 'IMDS_UNAVAILABLE', message: 'no instance profile', hint: 'attach one' },
      },
      'warn',
      /region us-west-2, instance i-1; no instance profile/,
    ],
    [
      { disabled: false, endpoint: 'http://x', region: 'us-west-2', instanceId: 'i-1', role: 'node-role' },
      'pass',
      /token PUT answered .* instance profile role node-role$/,
    ],
  ])('%j', (facts, want, re) => {
    const r = imdsCheck(facts);
    expect(r.status).toBe(want);
    expect(r.message).toMatch(re);
  });
});

describe('ecr', () => {
  it.each<[Parameters<typeof ecrCheck>[0], CheckStatus, RegExp]>([
    [
      { skip: 'the sandbox image registry.k8s.io/pause:3.9 is not in a private ECR registry' },
      'skip',
      /not in a private ECR registry/,
    ],
    [
      { account: '602401143452', region: 'us-west-2', expiresAt: new Date('2030-01-01T00:00:00Z') },
      'pass',
      /registry 602401143452 \(us-west-2\): a token valid until 2030-01-01T00:00:00\.000Z \(not shown\)/,
    ],
    [
      {
        account: '602401143452',
        region: 'us-west-2',
        error: { code: 'ECR_THROTTLED', message: 'Rate exceeded', hint: 'h' },
      },
      'warn',
      /ECR_THROTTLED/,
    ],
    [
      {
        account: '602401143452',
        region: 'us-west-2',
        error: { code: 'ECR_AUTH_FAILED', message: 'AccessDenied', hint: 'give the role …' },
      },
      'fail',
      /ECR_AUTH_FAILED: AccessDenied/,
    ],
  ])('%j', (facts, want, re) => {
    const r = ecrCheck(facts);
    expect(r.status).toBe(want);
    expect(r.message).toMatch(re);
  });
});

describe('startup-cache', () => {
  const dir = '/var/cache/node-bootstrap';
  const part = (name: string, source = 'same', cache = 'accepted') =>
    ({ name, source, cache }) as NonNullable<Parameters<typeof startupCacheCheck>[0]['parts']>[number];
  it.each([
    ['from src/ (nothing to compare)', undefined, 'skip', /^not running from the bundle/],
    [
      'every part there, every cache taken',
      [part('heavy'), part('aws')],
      'pass',
      /^2 parts with V8 1\.2 code caches in \/var\/cache\/node-bootstrap$/,
    ],
    [
      'none for this build',
      [part('heavy', 'missing', 'missing'), part('aws', 'missing', 'missing')],
      'warn',
      /^none for this build in \/var\/cache\/node-bootstrap: a boot compiles/,
    ],
    [
      'another V8 made them',
      [part('heavy', 'same', 'missing')],
      'warn',
      /^heavy: no code cache for V8 1\.2: a boot compiles/,
    ],
    [
      "a damaged cache, another build's source",
      [part('heavy', 'same', 'rejected'), part('aws', 'different', 'accepted')],
      'warn',
      /^heavy: a refused code cache for V8 1\.2; aws: source from another build: /,
    ],
  ] as const)('%s: %s', (_, parts, status, message) => {
    const r = startupCacheCheck({ dir, v8: '1.2', ...(parts ? { parts: [...parts] } : {}) });
    expect(r).toMatchObject({ id: 'startup-cache', status, message: expect.stringMatching(message) });
    expect(r.fix).toBe(
      status === 'warn'
        ? `run \`node-bootstrap install\` in the image build, with the node the node boots with: it writes ${dir}`
        : '',
    );
  });
});

describe('the report', () => {
  const c = (id: CheckResult['id'], s: CheckStatus, fix = ''): CheckResult => ({
    id,
    status: s,
    message: `${id} says ${s}`,
    fix,
  });
  it.each<[CheckResult[], boolean, number]>([
    [[c('config', 'pass'), c('disk', 'warn', 'free space'), c('imds', 'skip')], true, 0],
    [[c('config', 'pass'), c('disk', 'fail', 'free space')], false, 1],
    [[c('config', 'fail', 'fix the yaml'), c('disk', 'skip')], false, 2],
  ])('ok and exit code', (checks, ok, code) => {
    const r = report(checks);
    expect(r.ok).toBe(ok);
    expect(exitCode(r)).toBe(code);
  });

  it('human table: one line per check, the fix under what failed or warned, the verdict last', () => {
    const text = formatReport(
      report([
        c('config', 'pass'),
        c('disk', 'fail', 'free 3 GiB'),
        c('imds', 'warn', 'attach a role'),
        c('ecr', 'skip'),
      ]),
      'node-bootstrap 0.1.0 check',
    );
    expect(text.split('\n')).toEqual([
      'config  pass  config says pass',
      'disk    FAIL  disk says fail',
      '              fix: free 3 GiB',
      'imds    WARN  imds says warn',
      '              fix: attach a role',
      'ecr     skip  ecr says skip',
      '',
      'node-bootstrap 0.1.0 check: FAILED (1 failed, 1 warning, 1 passed, 1 skipped)',
    ]);
  });
});

describe('proxy', () => {
  const ENDPOINT = 'https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com';
  const facts = (
    nodeVars: Record<string, string>,
    containerdVars: Record<string, string> = {},
    extra: Partial<ProxyFacts> = {},
  ): ProxyFacts => {
    const settings = proxySettings([{ source: 'the process environment', vars: nodeVars }]);
    return {
      settings,
      verdict: noProxyVerdict({ settings, clusterEndpoint: ENDPOINT }),
      problems: [],
      nodeConfigFrom: 'IMDS /latest/user-data (MIME multipart, 2 parts)',
      containerd: {
        unit: 'containerd.service',
        found: true,
        settings: proxySettings([{ source: 'containerd.service (/etc/proxy.env)', vars: containerdVars }]),
      },
      ...extra,
    };
  };
  const FULL = '169.254.169.254,fd00:ec2::254,localhost,127.0.0.1,.us-west-2.eks.amazonaws.com';

  it('no proxy anywhere: pass, the ECR API is reached directly', () => {
    expect(proxyCheck(facts({}))).toMatchObject({
      status: 'pass',
      message: expect.stringMatching(/^no proxy for node-bootstrap: the ECR API is reached directly/),
    });
  });

  it('a proxy, a complete NO_PROXY, and containerd with its own proxy: pass, credentials never shown', () => {
    const r = proxyCheck(
      facts(
        { HTTPS_PROXY: 'http://user:s3cret@proxy:3128', NO_PROXY: FULL },
        { HTTPS_PROXY: 'http://user:s3cret@proxy:3128', NO_PROXY: FULL },
      ),
    );
    expect(r.status).toBe('pass');
    expect(r.message).toContain('HTTPS_PROXY=http://***@proxy:3128');
    expect(JSON.stringify(r)).not.toContain('s3cret');
  });

  it('NO_PROXY that misses IMDS and the cluster endpoint: warn, names each entry and the line to set', () => {
    const r = proxyCheck(
      facts(
        { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: 'localhost' },
        { HTTPS_PROXY: 'http://proxy:3128' },
      ),
    );
    expect(r.status).toBe('warn');
    expect(r.message).toMatch(
      /^NO_PROXY does not cover 169\.254\.169\.254 \(IMDS.*\), fd00:ec2::254 \(.*\), 127\.0\.0\.1 \(.*\), \.us-west-2\.eks\.amazonaws\.com \(the cluster endpoint 0123456789abcdef\.gr7/,
    );
    expect(r.fix).toContain(
      'set NO_PROXY=localhost,169.254.169.254,fd00:ec2::254,127.0.0.1,.us-west-2.eks.amazonaws.com,.svc,.cluster.local',
    );
  });

  it('a proxy for the node but none in containerd: warn with the drop-in to add', () => {
    const r = proxyCheck(facts({ HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: FULL }));
    expect(r.status).toBe('warn');
    expect(r.message).toMatch(/containerd\.service has none in its unit environment/);
    expect(r.fix).toMatch(
      /\/etc\/systemd\/system\/containerd\.service\.d\/http-proxy\.conf with \[Service\] Environment="HTTPS_PROXY=http:\/\/proxy:3128"/,
    );
  });

  it('a NodeConfig that does not parse: warn, names the part and key', () => {
    const r = proxyCheck(
      facts(
        {},
        {},
        {
          problems: [
            'IMDS /latest/user-data, application/node.eks.aws part 1: spec.instance.environment.default: expected a map',
          ],
        },
      ),
    );
    expect(r).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(/part 1: spec\.instance\.environment\.default/),
    });
  });
});
