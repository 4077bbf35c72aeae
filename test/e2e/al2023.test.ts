/**
 * An AL2023-like EKS worker node in a booted systemd, with node-bootstrap installed FROM ITS RPM
 * into the image root before boot (`rpm --root`, as an image build does; its scriptlet runs in that
 * chroot), never from the repository:
 *
 *   - `nodeadm-config.service` (a shell oneshot standing in for nodeadm's config step) renders what
 *     nodeadm renders: containerd's `/etc/containerd/config.toml` (schema v2, sandbox_image
 *     `localhost/kubernetes/pause:latest`), kubelet's `/etc/kubernetes/kubelet/config.json` plus a
 *     `config.json.d/` drop-in, and `/etc/eks/kubelet/environment`;
 *   - the image bakes the pause image as an OCI archive at `/etc/eks/pause.tar` (the testbed's pause
 *     image under `localhost/kubernetes/pause:latest`);
 *   - kubelet.service is shaped like the AMI's (EnvironmentFile=/etc/eks/kubelet/environment,
 *     `--config`, `--config-dir`), running the kubelet stand-in (lib/boot-kubelet.ts);
 *   - containerd 1.7 (Debian's unit), the regional ECR host's certs.d pointing at the testbed's
 *     registry or at a port where nothing listens.
 *
 * Cases (each its own container, side by side):
 *   - the RPM, then `install --mode standalone` at image build (the package alone gates nothing),
 *     registry down: the pause image comes from the baked archive, is pinned
 *     under the name containerd is configured with, and only then kubelet starts; the packages
 *     reinstalled on the live node reload systemd and enable nothing;
 *   - containerd started on the image's old config before nodeadm-config rendered the new one (it is
 *     restarted), behind a CONNECT proxy that logs every tunnel (test/testbed/proxy.ts), HTTPS_PROXY
 *     only in the NodeConfig of the MIME user data IMDS serves, no baked archive: the ECR API call (by
 *     its real name) goes through the proxy; IMDS and containerd's pull do not;
 *   - `install --mode nodeadm` in the image build: nodeadm-run.service (the AMI's, in the vendor
 *     directory, after nodeadm-config and cloud-final) runs node-bootstrap instead of nodeadm; the
 *     verdict is in `journalctl -u nodeadm-run`, a unit ordered after nodeadm-run still follows it;
 *   - `install --mode observe`: a shell nodeadm boots the node (imports and pins the archive, starts
 *     kubelet ungated); node-bootstrap-observe.service reports every phase after it, changing nothing;
 *   - the deb into the image root (`dpkg --root`, its real Depends met by this Debian's nodejs), then
 *     `install --mode standalone`: the boot runs from the units install put in /etc;
 *   - containerd 2.x's config schema (version 3), which containerd 1.7 refuses to run: the reader
 *     only, through `node-bootstrap check --root` on an image root the RPM was installed into.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunStatus } from '../../src/runner/status.js';
import { ensureBuilt } from '../integration/lib/run-bundle.js';
import { ECR_HOST, startTestbed, type Testbed } from '../testbed/index.js';
import { buildPackages, expectedFiles, type Packages } from '../testbed/packages.js';
import { exportPauseArchive } from '../testbed/pause-image.js';
import { createPki } from '../testbed/pki.js';
import { startProxy, startTlsFront, type TestProxy, type TlsFront } from '../testbed/proxy.js';
import { bootSystemd, readInside, type SystemdContainer } from './harness.js';
import {
  ctrImages,
  hostsToml,
  INSIDE,
  kubeletStandin,
  REPO,
  SOCKET,
  STANDIN,
  show,
} from './lib/boot-node.js';

/** The name AL2023 images bake and pin the pause image under. */
const PAUSE_LOCAL = 'localhost/kubernetes/pause:latest';
const PAUSE_TAR = '/etc/eks/pause.tar';
const NB = 'node-bootstrap.service';
const STATE_DIR = '/run/node-bootstrap';
const KUBELET_CONFIG = '/etc/kubernetes/kubelet/config.json';
const KUBELET_DROPINS = '/etc/kubernetes/kubelet/config.json.d';
const KUBELET_ENV = '/etc/eks/kubelet/environment';
/** Where the rendered kubelet drop-in points pods' DNS. */
const POD_RESOLV = '/etc/eks/resolv-pods.conf';
const PKG_INSIDE = '/srv/packages';
const REGION = 'us-west-2';
const ECR_API = `api.ecr.${REGION}.amazonaws.com`;
const ECR_API_CA = '/etc/e2e/ecr-api-ca.pem';
/** node_exporter's textfile collector directory (the image's node_exporter package would create it). */
const TEXTFILE_DIR = '/var/lib/node_exporter/textfile_collector';

/** User data as EKS node groups send it: MIME multipart, a script part and a NodeConfig part. */
const userData = (proxy: string) => `MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="==BOUNDARY=="

--==BOUNDARY==
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
echo "user script"

--==BOUNDARY==
Content-Type: application/node.eks.aws

apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: e2e
    apiServerEndpoint: https://0123456789ABCDEF0123456789ABCDEF.gr7.${REGION}.eks.amazonaws.com
    certificateAuthority: ZTJl
    cidr: 10.100.0.0/16
  instance:
    environment:
      default:
        HTTPS_PROXY: ${proxy}
        NO_PROXY: 169.254.169.254,fd00:ec2::254,localhost,127.0.0.1,.${REGION}.eks.amazonaws.com

--==BOUNDARY==--
`;

/** containerd's config as nodeadm renders it on AL2023 (schema v2), for this testbed. */
function containerdToml(sandbox = PAUSE_LOCAL): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
address = "${SOCKET}"

[${cri}]
sandbox_image = "${sandbox}"
restrict_oom_score_adj = true

[${cri}.containerd]
default_runtime_name = "runc"
discard_unpacked_layers = true

[${cri}.registry]
config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
`;
}

/** The nodeadm-config stand-in: renders containerd's and kubelet's configuration, as nodeadm does. */
function nodeadmConfigScript(): string {
  const kubeletConfig = {
    kind: 'KubeletConfiguration',
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    address: '0.0.0.0',
    clusterDomain: 'cluster.local',
    clusterDNS: ['10.100.0.10'],
    cgroupDriver: 'systemd',
    containerRuntimeEndpoint: `unix://${SOCKET}`,
    imageGCHighThresholdPercent: 85,
    imageGCLowThresholdPercent: 80,
  };
  const dropIn = {
    kind: 'KubeletConfiguration',
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    resolvConf: POD_RESOLV,
    imageGCHighThresholdPercent: 75,
  };
  return `#!/bin/sh
# e2e stand-in for nodeadm's config step: render the files nodeadm renders, then exit.
set -eu
install -d -m 0755 /etc/containerd ${KUBELET_DROPINS} /etc/eks/kubelet
cat > /etc/containerd/config.toml <<'EOF'
${containerdToml()}EOF
cat > ${KUBELET_CONFIG} <<'EOF'
${JSON.stringify(kubeletConfig, null, 2)}
EOF
cat > ${KUBELET_DROPINS}/40-e2e.conf <<'EOF'
${JSON.stringify(dropIn, null, 2)}
EOF
cat > ${KUBELET_ENV} <<'EOF'
NODEADM_KUBELET_ARGS="--node-ip=10.0.0.12 --hostname-override=ip-10-0-0-12.us-west-2.compute.internal --cloud-provider=external"
EOF
echo "nodeadm-config (e2e): rendered containerd and kubelet configuration"
`;
}

const UNITS = {
  'nodeadm-config.service': `[Unit]
Description=nodeadm config stand-in (e2e): renders containerd's and kubelet's configuration
Before=containerd.service kubelet.service node-bootstrap.service nodeadm-run.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/libexec/e2e/nodeadm-config

[Install]
WantedBy=multi-user.target
`,
  // Shaped like the AMI's kubelet.service: flags from --config, --config-dir and the environment file.
  'kubelet.service': `[Unit]
Description=kubelet stand-in (e2e), started the way the AMI starts kubelet
Wants=containerd.service
After=containerd.service

[Service]
Type=notify
NotifyAccess=main
EnvironmentFile=-${KUBELET_ENV}
ExecStart=/usr/bin/node ${STANDIN} ${INSIDE}/proto ${SOCKET} --config ${KUBELET_CONFIG} --config-dir ${KUBELET_DROPINS} $NODEADM_KUBELET_ARGS
TimeoutStartSec=20s

[Install]
WantedBy=multi-user.target
`,
};

/** cloud-init's last stage, which nodeadm-run.service is ordered after. */
const CLOUD_FINAL = `[Unit]
Description=cloud-final stand-in (e2e)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'sleep 0.3; echo "cloud-final (e2e): user scripts done"'

[Install]
WantedBy=multi-user.target
`;

/** nodeadm-run.service as the AMI ships it in the vendor directory (its ordering), with a stand-in command. */
const NODEADM_RUN = `[Unit]
Description=EKS Nodeadm Run (e2e stand-in)
After=nodeadm-config.service cloud-final.service
Requires=nodeadm-config.service

[Service]
Type=oneshot
ExecStart=/usr/local/libexec/e2e/nodeadm-init

[Install]
WantedBy=multi-user.target
`;

/** A unit of the image ordered after nodeadm-run.service (what must keep working when node-bootstrap takes the slot). */
const AFTER_NODEADM = `[Unit]
Description=e2e: a unit ordered after nodeadm-run.service
After=nodeadm-run.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target
`;

/** nodeadm init, as far as the sandbox image goes: containerd, the baked archive imported and pinned, kubelet. */
const NODEADM_INIT = `#!/bin/sh
set -eu
echo "nodeadm init (e2e stand-in): containerd, sandbox image, kubelet"
touch /run/e2e-nodeadm-init-ran
systemctl restart containerd.service
name=$(ctr -n k8s.io images import /etc/eks/pause.tar | sed -n 's/^unpacking \\([^ ]*\\) .*/\\1/p' | head -n 1)
[ "$name" = "${PAUSE_LOCAL}" ] || ctr -n k8s.io images tag "$name" "${PAUSE_LOCAL}"
ctr -n k8s.io images label "${PAUSE_LOCAL}" io.cri-containerd.pinned=pinned
systemctl start kubelet.service
`;

let tb: Testbed;
/** The proxy case's own testbed (its IMDS serves the proxy's NodeConfig), proxy and ECR API TLS front. */
let tbp: Testbed;
let proxy: TestProxy;
let front: TlsFront;
let frontCa: string;
let pkgs: Packages;
let pauseTar: Uint8Array;
const log: string[] = [];
/** node_bootstrap.prom from the standalone boot, printed after the run (the issue's closing note). */
let metricsFile = '';

beforeAll(async () => {
  await ensureBuilt();
  [pkgs, tb, tbp] = await Promise.all([
    buildPackages('al2023'),
    startTestbed({ containerd: false }),
    startTestbed({ containerd: false }),
  ]);
  const pki = await createPki(join(tbp.dir, 'pki-ecr-api'), [ECR_API]);
  frontCa = readFileSync(pki.caFile, 'utf8');
  front = await startTlsFront({
    cert: readFileSync(pki.certFile, 'utf8'),
    key: readFileSync(pki.keyFile, 'utf8'),
    to: new URL(tbp.ecr!.url).host,
  });
  proxy = await startProxy({ routes: { [`${ECR_API}:443`]: front.address } });
  tbp.imds!.setUserData(userData(proxy.url));
  const tar = await exportPauseArchive(join(pkgs.dir, 'pause.tar'), {
    format: 'oci-archive',
    name: PAUSE_LOCAL,
  });
  pauseTar = readFileSync(tar);
}, 180_000);

afterAll(async () => {
  await Promise.all([proxy?.close(), front?.close()]);
  await Promise.all([tb?.stop(), tbp?.stop()]);
  if (pkgs) rmSync(pkgs.dir, { recursive: true, force: true });
  if (log.length) console.log(`e2e al2023:\n${log.map((l) => `  ${l}`).join('\n')}`);
  if (metricsFile && process.env.SHOW_FIGURES === '1') console.log(`node_bootstrap.prom:\n${metricsFile}`);
});

interface NodeOptions {
  name: string;
  /** The testbed this node's AWS calls and pulls go to. */
  tb: Testbed;
  /** Bake /etc/eks/pause.tar into the image (default true). */
  archive?: boolean;
  /** The unit's environment for node-bootstrap (default: the testbed's AWS endpoints). */
  unitEnv?: Record<string, string>;
  /** Units enabled at image build, besides nodeadm-config and containerd. */
  enable: string[];
  /** Extra units (e.g. nodeadm-run.service). */
  units?: Record<string, string>;
  /** Extra files. */
  files?: Record<string, string | { content: string; mode?: number }>;
  /** Where containerd pulls the regional ECR host from; default a port where nothing listens. */
  registry?: string;
  /**
   * containerd starts first, on the config baked into the image (the regional sandbox_image), and
   * nodeadm-config renders the new one after it: the daemon runs on a stale config.
   */
  staleContainerd?: boolean;
  /** `node-bootstrap install --mode …` in the image build, after the RPM (default: none). */
  mode?: 'standalone' | 'nodeadm' | 'observe';
  /** Which package the image build installs (default the RPM). */
  pkg?: 'rpm' | 'deb';
  /** The unit that runs node-bootstrap, for the testbed environment drop-in (default node-bootstrap.service). */
  runUnit?: string;
  /** Enable containerd.service at image build (default true; on nodeadm images nodeadm starts it). */
  enableContainerd?: boolean;
}

/** A testbed's AWS endpoints (ECR API and IMDS emulators). */
const awsEnv = (tb: Testbed): Record<string, string> =>
  Object.fromEntries(
    [
      'AWS_ENDPOINT_URL_ECR',
      'AWS_EC2_METADATA_SERVICE_ENDPOINT',
      'AWS_CONFIG_FILE',
      'AWS_SHARED_CREDENTIALS_FILE',
    ].map((k) => [k, tb.env[k]!]),
  );

/** The AL2023-like node, with node-bootstrap's RPM installed into the root before boot. */
async function al2023Node(o: NodeOptions): Promise<SystemdContainer> {
  const { tb } = o;
  if (!tb.pki) throw new Error('testbed without PKI');
  const bin17 = `${INSIDE}/.cache/containerd-1.7/usr/bin`;
  const certs = `/etc/containerd/certs.d/${ECR_HOST}`;
  const envLines = Object.entries(o.unitEnv ?? awsEnv(tb))
    .map(([k, v]) => `Environment="${k}=${v}"`)
    .join('\n');
  return bootSystemd({
    name: o.name,
    privateNetwork: false,
    tmpfs: ['/var/lib/containerd'],
    binds: [
      { host: REPO, inside: INSIDE, readOnly: true },
      { host: pkgs.dir, inside: PKG_INSIDE, readOnly: true },
    ],
    units: {
      ...UNITS,
      ...(o.staleContainerd
        ? {
            'nodeadm-config.service': UNITS['nodeadm-config.service'].replace(
              'Before=containerd.service ',
              'After=containerd.service\nBefore=',
            ),
          }
        : {}),
      ...o.units,
    },
    files: {
      '/usr/local/libexec/e2e/nodeadm-config': nodeadmConfigScript(),
      ...(o.staleContainerd
        ? { '/etc/containerd/config.toml': containerdToml(`${ECR_HOST}/eks/pause:3.10`) }
        : {}),
      ...(o.archive === false ? {} : { [PAUSE_TAR]: { content: pauseTar, mode: 0o644 } }),
      [POD_RESOLV]: 'nameserver 10.100.0.10\nsearch us-west-2.compute.internal\noptions ndots:5\n',
      [`${certs}/hosts.toml`]: hostsToml(o.registry ?? 'https://127.0.0.1:9', `${certs}/ca.crt`),
      [`${certs}/ca.crt`]: readFileSync(tb.pki.caFile, 'utf8'),
      [STANDIN]: await kubeletStandin(),
      '/etc/systemd/system/containerd.service.d/50-e2e.conf': [
        '[Service]',
        'ExecStart=',
        `ExecStart=${bin17}/containerd`,
        `Environment=PATH=${bin17}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        '',
      ].join('\n'),
      // The testbed's AWS endpoints (ECR API and IMDS emulators): test plumbing, not product config.
      // The ECR API by its real name (the proxy case) needs the test CA, hence NODE_EXTRA_CA_CERTS.
      [`/etc/systemd/system/${o.runUnit ?? NB}.d/50-e2e-aws.conf`]: `[Service]\n${envLines}\n`,
      // No sandboxImage settings: source auto, and /etc/eks/pause.tar is the archive for
      // localhost/kubernetes/pause, both by default.
      '/etc/node-bootstrap/config.d/50-e2e.yaml': [
        'timeouts:',
        '  containerd-unit: 30s',
        '  containerd-socket: 10s',
        '  cri: 10s',
        '  sandbox-image: 60s',
        '  kubelet: 20s',
        '',
      ].join('\n'),
      ...o.files,
    },
    // The image build: the RPM into the root, scriptlet included (it runs chrooted; no systemd
    // runs there, so it reloads nothing). --nodeps: Node.js is Debian's here, not an RPM.
    // The image also has node_exporter's textfile directory, as its node_exporter package would.
    prepare: [
      o.pkg === 'deb'
        ? // The root's dpkg database is this Debian's: Depends: nodejs (>= 20) is met for real.
          `dpkg --root "$R" -i ${pkgs.deb}`
        : `rpm --root "$R" --dbpath /var/lib/rpm --nodeps -i ${pkgs.rpm}`,
      `install -d -m 0755 "$R${TEXTFILE_DIR}"`,
      ...(o.mode ? [`"$R/usr/bin/node-bootstrap" install --mode ${o.mode} --root "$R"`] : []),
    ].join('\n'),
    enable: [
      'nodeadm-config.service',
      ...(o.enableContainerd === false ? [] : ['containerd.service']),
      ...o.enable,
    ],
    bootTimeoutMs: 90_000,
  });
}

/** A command on the host, asynchronously (the testbed's emulators answer from this process). */
const host = (
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) =>
    execFile(
      cmd,
      args,
      { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    ),
  );

const statusJson = async (c: SystemdContainer): Promise<RunStatus> =>
  JSON.parse(await readInside(c, `${STATE_DIR}/status.json`)) as RunStatus;

async function diagnose(c: SystemdContainer, units: string[]): Promise<string> {
  const lines = await Promise.all(
    units.map(async (u) => {
      const s = await show(c, u);
      return `${u}: ${s.ActiveState}/${s.SubState} Result=${s.Result} ${s.StatusText}`;
    }),
  );
  const tail = await c.exec(['journalctl', '-u', NB, '-o', 'cat', '-n', '25', '--no-pager']);
  return `${c.name}, failed: ${c.failedUnits.join(' ') || 'none'}\n${lines.join('\n')}\n${tail.stdout}`;
}

describe('AL2023-like node, node-bootstrap from its packages', () => {
  it.concurrent('standalone node-bootstrap.service, registry down: the baked archive is imported and pinned as localhost/kubernetes/pause:latest, then kubelet starts', async () => {
    const c = await al2023Node({ tb, name: 'al2023-std', mode: 'standalone', enable: ['kubelet.service'] });
    try {
      const units = ['nodeadm-config.service', 'containerd.service', NB, 'kubelet.service'];
      const why = await diagnose(c, units);
      expect(c.failedUnits, why).toEqual([]);

      // Installed by rpm into the image: the package's own files, rpm -V clean, the unit as shipped.
      const q = await c.exec(['rpm', '--dbpath', '/var/lib/rpm', '-q', 'node-bootstrap'], { check: true });
      expect(q.stdout.trim()).toBe(`node-bootstrap-${pkgs.version}-1.noarch`);
      const verify = await c.exec(['rpm', '--dbpath', '/var/lib/rpm', '-V', '--nodeps', 'node-bootstrap']);
      expect(verify.stdout + verify.stderr).toBe('');
      const frag = await c.exec(['systemctl', 'show', NB, '-P', 'FragmentPath', '-P', 'ExecStart'], {
        check: true,
      });
      // `install --mode standalone` put the unit (the package's, byte for byte) and kubelet's gate in /etc.
      expect(frag.stdout).toMatch(/^\/etc\/systemd\/system\/node-bootstrap\.service$/m);
      expect(frag.stdout).toContain('path=/usr/bin/node-bootstrap ; argv[]=/usr/bin/node-bootstrap run ;');
      const listed = await c.exec(['rpm', '--dbpath', '/var/lib/rpm', '-ql', 'node-bootstrap'], {
        check: true,
      });
      expect(listed.stdout.trim().split('\n')).toEqual(expect.arrayContaining([...expectedFiles().keys()]));

      // nodeadm-config rendered before containerd started; containerd runs on the rendered config.
      const [cfg, ctrd, nb, kubelet] = await Promise.all(units.map((u) => show(c, u)));
      expect([cfg!.ActiveState, cfg!.Result]).toEqual(['active', 'success']);
      expect(ctrd!.ExecMainStartTimestampMonotonic).toBeGreaterThan(cfg!.ActiveEnterTimestampMonotonic);
      expect([nb!.ActiveState, nb!.Result], why).toEqual(['active', 'success']);
      expect(kubelet!.ActiveState, why).toBe('active');

      // The pause image: from the baked archive (the registry is down), under the configured name, pinned.
      const status = await statusJson(c);
      const pause = status.phases.find((p) => p.name === 'sandbox-image')!;
      expect(pause, why).toMatchObject({ result: 'ok' });
      expect(pause.facts).toMatchObject({
        image: PAUSE_LOCAL,
        sourceMode: 'auto',
        source: `archive ${PAUSE_TAR}`,
        configuredFrom: expect.stringContaining('/etc/containerd/config.toml'),
      });
      expect((await ctrImages(c)).get(PAUSE_LOCAL)).toMatch(/io\.cri-containerd\.pinned=pinned/);
      // kubelet (the stand-in checks the configured sandbox image is present and pinned) came after.
      expect(kubelet!.ExecMainStartTimestampMonotonic).toBeGreaterThan(nb!.ExecMainStartTimestampMonotonic);

      // kubelet's rendered files are where node-bootstrap read its settings: the drop-in's resolvConf.
      const resolv = status.phases.find((p) => p.name === 'resolv-conf');
      expect(resolv, why).toMatchObject({ result: 'ok' });
      expect(JSON.stringify(resolv!.facts)).toContain(POD_RESOLV);

      // Where operators look: the timeline's copy for the log collector, and node_exporter's metrics,
      // parsed as Prometheus text format.
      const logged = JSON.parse(await readInside(c, '/var/log/node-bootstrap/status.json')) as RunStatus;
      expect(logged.phases.map((p) => [p.name, p.result])).toEqual(
        status.phases.map((p) => [p.name, p.result]),
      );
      const prom = await readInside(c, `${TEXTFILE_DIR}/node_bootstrap.prom`);
      const families = new Map(parsePrometheusTextFormat(prom).map((f) => [f.name, f]));
      const samples = (name: string) => families.get(name)?.metrics ?? [];
      expect(samples('node_bootstrap_info')).toEqual([
        {
          value: '1',
          labels: { version: pkgs.version, containerd_version: expect.stringMatching(/^v?1\.7\.\d+/) },
        },
      ]);
      expect(Number(samples('node_bootstrap_run_success')[0]?.value)).toBe(1);
      const bootSecs = Number(samples('node_bootstrap_run_timestamp_seconds')[0]?.value);
      expect(Math.abs(bootSecs - Date.parse(status.startedAt) / 1000)).toBeLessThan(1);
      const successByPhase = Object.fromEntries(
        samples('node_bootstrap_phase_success').map((m) => [m.labels?.phase, Number(m.value)]),
      );
      expect(successByPhase).toEqual(Object.fromEntries(status.phases.map((p) => [p.name, 1])));
      for (const m of samples('node_bootstrap_phase_duration_seconds')) {
        const phase = status.phases.find((p) => p.name === m.labels?.phase)!;
        expect(Number(m.value)).toBeCloseTo((phase.durationMs ?? 0) / 1000, 2);
      }
      for (const f of families.values()) expect(f.type, f.name).toBe('GAUGE');
      metricsFile = prom;

      // check, run as an operator would on this node, agrees: the boot unit enabled, kubelet gated.
      const check = await c.exec(['/usr/bin/node-bootstrap', 'check', '--json'], {
        timeoutMs: 30_000,
        env: awsEnv(tb),
      });
      const checks = JSON.parse(check.stdout) as { checks: { id: string; status: string }[] };
      for (const id of ['config', 'units', 'pause-pinned'])
        expect(
          checks.checks.find((x) => x.id === id),
          check.stdout,
        ).toMatchObject({ status: 'pass' });

      log.push(
        `standalone: sandbox-image ${pause.durationMs} ms from ${pause.facts.source}; phases ${status.phases.map((p) => `${p.name} ${p.durationMs ?? 0}`).join(', ')} (ms)`,
      );

      // The packages on the live node: their scripts reload systemd only because it runs here.
      const reloads = async () =>
        (await c.journal(['_PID=1'])).filter((e) => String(e.MESSAGE).startsWith('Reloading')).length;
      const reloadsBefore = await reloads();
      const rpmU = await c.exec([
        'rpm',
        '--dbpath',
        '/var/lib/rpm',
        '-U',
        '--replacepkgs',
        '--nodeps',
        `${PKG_INSIDE}/${pkgs.rpm.split('/').pop()}`,
      ]);
      expect(rpmU.code, rpmU.stderr).toBe(0);
      const deb = await c.exec(['dpkg', '-i', `${PKG_INSIDE}/${pkgs.deb.split('/').pop()}`], {
        timeoutMs: 60_000,
      });
      expect(deb.code, deb.stderr + deb.stdout).toBe(0); // Depends: nodejs (>= 20) met by this node's Node
      const reloadsAfter = await reloads();
      expect(reloadsAfter - reloadsBefore).toBeGreaterThanOrEqual(2);
      const dpkgFormat = '-f=$' + '{Status} $' + '{Version}';
      expect((await c.exec(['dpkg-query', '-W', dpkgFormat, 'node-bootstrap'])).stdout).toBe(
        `install ok installed ${pkgs.version}-1`,
      );
      expect((await c.exec(['/usr/bin/node-bootstrap', '--version'], { check: true })).stdout.trim()).toBe(
        pkgs.version,
      );
      // Nothing was enabled or restarted by the packages.
      expect((await show(c, NB)).ExecMainStartTimestampMonotonic).toBe(nb!.ExecMainStartTimestampMonotonic);
    } finally {
      await c.stop();
    }
  });

  it.concurrent('containerd on a stale config, behind a proxy from NodeConfig user data, no baked archive: containerd restarted; the ECR API call goes through the proxy, IMDS and the registry do not', async () => {
    const { AWS_ENDPOINT_URL_ECR: _, ...direct } = awsEnv(tbp);
    const c = await al2023Node({
      tb: tbp,
      name: 'al2023-proxy',
      enable: [NB, 'kubelet.service'],
      archive: false,
      staleContainerd: true,
      registry: `https://${tbp.registry!.host}`,
      // The ECR API by its real name (no endpoint override): only the proxy can route it.
      unitEnv: { ...direct, NODE_EXTRA_CA_CERTS: ECR_API_CA },
      files: { [ECR_API_CA]: frontCa },
    });
    try {
      const units = ['nodeadm-config.service', 'containerd.service', NB, 'kubelet.service'];
      const why = await diagnose(c, units);
      expect(c.failedUnits, why).toEqual([]);
      const [nb, kubelet] = await Promise.all([show(c, NB), show(c, 'kubelet.service')]);
      expect([nb.ActiveState, nb.Result], why).toEqual(['active', 'success']);
      expect(kubelet.ActiveState, why).toBe('active');

      // What went through the proxy: the one AWS call, by its real name. Not IMDS, not the registry.
      expect(proxy.lines(), why).toEqual([`CONNECT ${ECR_API}:443 → ${front.address} 200`]);
      expect(tbp.ecr!.requests.map((q) => q.target)).toEqual(['GetAuthorizationToken']);
      const imdsPort = new URL(tbp.imds!.url).port;
      expect(tbp.imds!.requests.some((q) => q.path === '/latest/user-data' && q.status === 200)).toBe(true);
      expect(proxy.log.some((e) => e.target.endsWith(`:${imdsPort}`))).toBe(false);

      // containerd started on the image's config, before nodeadm-config rendered the new one:
      // node-bootstrap restarted it, so the rendered sandbox_image is the one in force.
      const [cfg, ctrd] = await Promise.all([
        show(c, 'nodeadm-config.service'),
        show(c, 'containerd.service'),
      ]);
      expect(ctrd.ExecMainStartTimestampMonotonic).toBeGreaterThan(cfg.ActiveEnterTimestampMonotonic);
      const status = await statusJson(c);
      expect(status.phases.find((p) => p.name === 'containerd-unit')!.facts).toMatchObject({
        containerdRestarted: true,
      });
      const starts = (await c.journal(['_PID=1', 'UNIT=containerd.service'])).filter((e) =>
        /^Started containerd/.test(String(e.MESSAGE)),
      );
      expect(starts.length).toBe(2);
      const pause = status.phases.find((p) => p.name === 'sandbox-image')!;
      expect(pause.facts).toMatchObject({
        image: PAUSE_LOCAL,
        source: `${ECR_HOST}/eks/pause:3.10`,
        proxy: expect.stringMatching(
          /^HTTPS_PROXY=\S+ from NodeConfig spec\.instance\.environment\.default /,
        ),
      });
      expect(pause.warnings.filter((w) => w.includes('NO_PROXY'))).toEqual([]);
      expect((await ctrImages(c)).get(PAUSE_LOCAL)).toMatch(/io\.cri-containerd\.pinned=pinned/);
      log.push(
        `stale containerd: restarted (${status.phases[0]!.facts.containerdRestartReason})`,
        `proxy: ${proxy.lines().join(' | ')}; IMDS requests ${tbp.imds!.requests.length} (direct); sandbox-image ${pause.durationMs} ms from ${pause.facts.source}`,
      );
    } finally {
      await c.stop();
    }
  });

  it.concurrent('containerd 2.x schema (version 3): containerd 1.7 refuses it, node-bootstrap check reads pinned_images.sandbox from an image root', async () => {
    // The image build's view: the RPM installed into an image root, the config nodeadm would render
    // for containerd 2.x, and node-bootstrap's own check pointed at that root (no boot needed).
    const root = mkdtempSync(join(pkgs.dir, 'v3-root-'));
    await host('rpm', [
      '--root',
      root,
      '--dbpath',
      '/var/lib/rpm',
      '--nodeps',
      '--noscripts',
      '-i',
      pkgs.rpm,
    ]);
    const v3 = `version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
address = "${SOCKET}"

[plugins."io.containerd.cri.v1.images".pinned_images]
sandbox = "${PAUSE_LOCAL}"

[plugins."io.containerd.cri.v1.images".registry]
config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
`;
    mkdirSync(join(root, 'etc/containerd'), { recursive: true });
    writeFileSync(join(root, 'etc/containerd/config.toml'), v3);
    // containerd 1.7 (the testbed's newest) cannot run it: this case is the reader's only.
    const ctrd = await host(join(REPO, '.cache/containerd-1.7/usr/bin/containerd'), [
      '--config',
      join(root, 'etc/containerd/config.toml'),
      'config',
      'dump',
    ]);
    expect(ctrd.code).not.toBe(0);
    expect(ctrd.stderr).toMatch(/unsupported config version `3`/);

    const r = await host(join(root, 'usr/bin/node-bootstrap'), ['check', '--root', root, '--json'], {
      AWS_REGION: REGION,
      AWS_EC2_METADATA_SERVICE_ENDPOINT: 'http://127.0.0.1:9',
    });
    const checks = (JSON.parse(r.stdout) as { checks: { id: string; status: string; message: string }[] })
      .checks;
    const sandbox = checks.find((x) => x.id === 'sandbox-image')!;
    expect(sandbox.message).toContain(PAUSE_LOCAL);
    expect(sandbox.message).toContain('pinned_images.sandbox under [plugins."io.containerd.cri.v1.images"]');
    expect(checks.find((x) => x.id === 'ecr')?.message).toContain(`the sandbox image ${PAUSE_LOCAL}`);
    rmSync(root, { recursive: true, force: true });
    log.push(
      `containerd schema 3 (reader only): check says "${sandbox.status}: ${sandbox.message.slice(0, 120)}…"`,
    );
  });

  it.concurrent("install --mode nodeadm from the RPM: nodeadm-run.service runs node-bootstrap in nodeadm's slot, after nodeadm-config and cloud-final; its name, journal and followers keep working", async () => {
    const RUN = 'nodeadm-run.service';
    const c = await al2023Node({
      tb,
      name: 'al2023-nodeadm',
      mode: 'nodeadm',
      runUnit: RUN,
      enableContainerd: false,
      enable: ['cloud-final.service', RUN, 'e2e-after-nodeadm.service', 'kubelet.service'],
      units: {
        'cloud-final.service': CLOUD_FINAL,
        '/usr/lib/systemd/system/nodeadm-run.service': NODEADM_RUN,
        'e2e-after-nodeadm.service': AFTER_NODEADM,
      },
      files: { '/usr/local/libexec/e2e/nodeadm-init': NODEADM_INIT },
    });
    try {
      const units = ['nodeadm-config.service', 'cloud-final.service', RUN, 'kubelet.service'];
      const why = await diagnose(c, units);
      expect(c.failedUnits, why).toEqual([]);
      const prop = async (unit: string, p: string) =>
        (await c.exec(['systemctl', 'show', unit, '-P', p], { check: true })).stdout.trim();
      // The slot: nodeadm's command is replaced (its stand-in never ran), the drop-in from install.
      expect(await prop(RUN, 'DropInPaths')).toContain(
        '/etc/systemd/system/nodeadm-run.service.d/10-node-bootstrap.conf',
      );
      expect(await prop(RUN, 'ExecStart')).toMatch(/argv\[\]=\/usr\/bin\/node-bootstrap run ;/);
      expect(await prop(RUN, 'ExecStart')).not.toContain('nodeadm-init');
      expect((await c.exec(['test', '-e', '/run/e2e-nodeadm-init-ran'])).code).toBe(1);
      // node-bootstrap.service is installed but not enabled: the boot ran once, in nodeadm-run's slot.
      expect(await prop(NB, 'UnitFileState')).toBe('disabled');
      expect((await show(c, NB)).ExecMainStartTimestampMonotonic).toBe(0);

      const [cfg, cloud, run, kubelet, after] = await Promise.all(
        [...units.slice(0, 2), RUN, 'kubelet.service', 'e2e-after-nodeadm.service'].map((u) => show(c, u)),
      );
      expect([run!.Result, run!.ExecMainStatus], why).toEqual(['success', 0]);
      // Ordering kept: after nodeadm-config and cloud-final; the follower after the run ended.
      expect(run!.ExecMainStartTimestampMonotonic).toBeGreaterThan(cfg!.ActiveEnterTimestampMonotonic);
      expect(run!.ExecMainStartTimestampMonotonic).toBeGreaterThan(cloud!.ActiveEnterTimestampMonotonic);
      expect(after!.ActiveEnterTimestampMonotonic).toBeGreaterThan(run!.ExecMainExitTimestampMonotonic);
      expect(kubelet!.ActiveState, why).toBe('active');
      expect(kubelet!.ExecMainStartTimestampMonotonic).toBeGreaterThan(run!.ExecMainStartTimestampMonotonic);

      // Collectors that read by unit name find node-bootstrap's phase lines and verdict there.
      const said = (await c.journal(['-u', RUN])).map((e) => String(e.MESSAGE));
      expect(said).toContainEqual(expect.stringMatching(/^node-bootstrap: OK \d\/\d phases in /));
      const status = await statusJson(c);
      expect(status.result).toBe('ok');
      expect(status.phases.find((p) => p.name === 'sandbox-image')!.facts).toMatchObject({
        image: PAUSE_LOCAL,
        source: `archive ${PAUSE_TAR}`,
      });
      expect((await ctrImages(c)).get(PAUSE_LOCAL)).toMatch(/io\.cri-containerd\.pinned=pinned/);
      log.push(
        `nodeadm slot: ${RUN} ${run!.Result}, ${status.phases.length} phases ok, verdict in journalctl -u ${RUN}`,
      );
    } finally {
      await c.stop();
    }
  });

  it.concurrent('install --mode observe from the RPM: nodeadm boots the node; run --observe after it reports every phase and changes nothing', async () => {
    const OBSERVE = 'node-bootstrap-observe.service';
    const c = await al2023Node({
      tb,
      name: 'al2023-observe',
      mode: 'observe',
      runUnit: OBSERVE,
      enableContainerd: false,
      enable: ['cloud-final.service', 'nodeadm-run.service'],
      units: {
        'cloud-final.service': CLOUD_FINAL,
        '/usr/lib/systemd/system/nodeadm-run.service': NODEADM_RUN,
      },
      files: { '/usr/local/libexec/e2e/nodeadm-init': NODEADM_INIT },
    });
    try {
      const units = ['nodeadm-run.service', 'kubelet.service', OBSERVE, 'containerd.service'];
      const why = await diagnose(c, units);
      expect(c.failedUnits, why).toEqual([]);
      const [run, kubelet, observe, ctrd] = await Promise.all(units.map((u) => show(c, u)));
      // nodeadm did the boot (its stand-in ran) and started kubelet without any gate.
      expect(run!.Result, why).toBe('success');
      expect((await c.exec(['test', '-e', '/run/e2e-nodeadm-init-ran'])).code).toBe(0);
      expect(kubelet!.ActiveState, why).toBe('active');
      // Then the observer, after nodeadm-run ended: every phase reported, the verdict OK.
      expect([observe!.ActiveState, observe!.Result], why).toEqual(['active', 'success']);
      expect(observe!.ExecMainStartTimestampMonotonic).toBeGreaterThan(run!.ExecMainExitTimestampMonotonic);
      const status = await statusJson(c);
      expect(status.result, why).toBe('ok');
      expect(status.phases.map((p) => [p.name, p.result])).toEqual(
        ['containerd-unit', 'containerd-socket', 'cri', 'sandbox-image', 'resolv-conf', 'kubelet'].map(
          (n) => [n, 'ok'],
        ),
      );
      const said = (await c.journal(['-u', OBSERVE])).map((e) => String(e.MESSAGE));
      expect(said).toContainEqual(expect.stringMatching(/^node-bootstrap: OK /));
      // Changed nothing: no gate marker, containerd and kubelet started once each (by nodeadm), no AWS call.
      expect((await c.exec(['test', '-e', `${STATE_DIR}/gates-passed`])).code).toBe(1);
      const starts = async (unit: string) =>
        (await c.journal(['_PID=1', `UNIT=${unit}`])).filter((e) => /^Started /.test(String(e.MESSAGE)))
          .length;
      expect(await starts('kubelet.service')).toBe(1);
      expect((await show(c, NB)).ExecMainStartTimestampMonotonic).toBe(0);
      expect(ctrd!.ExecMainStartTimestampMonotonic).toBeLessThan(observe!.ExecMainStartTimestampMonotonic);
      expect(tb.ecr!.requests).toEqual([]);
      log.push(
        `observe: after nodeadm-run, ${status.phases.length} phases reported ok, nothing started or pinned by node-bootstrap`,
      );
    } finally {
      await c.stop();
    }
  });

  it.concurrent('the deb into the image root (dpkg --root), then install --mode standalone: node-bootstrap.service and the guard timer enabled, the boot runs from them', async () => {
    const c = await al2023Node({
      tb,
      name: 'al2023-deb',
      pkg: 'deb',
      mode: 'standalone',
      // The archive, registry down: this file's testbed sees no ECR call (the observe case counts on it).
      enable: ['kubelet.service'],
    });
    try {
      const units = ['containerd.service', NB, 'kubelet.service'];
      const why = await diagnose(c, units);
      expect(c.failedUnits, why).toEqual([]);
      const dpkgFormat = '-f=$' + '{Status} $' + '{Version}';
      expect((await c.exec(['dpkg-query', '-W', dpkgFormat, 'node-bootstrap'])).stdout).toBe(
        `install ok installed ${pkgs.version}-1`,
      );
      // install --mode standalone enabled the boot run and the guard (its copies in /etc).
      const enabled = await c.exec(['systemctl', 'is-enabled', NB, 'node-bootstrap-guard.timer']);
      expect(enabled.stdout.trim().split('\n')).toEqual(['enabled', 'enabled']);
      const frag = await c.exec(['systemctl', 'show', NB, '-P', 'FragmentPath'], { check: true });
      expect(frag.stdout.trim()).toBe(`/etc/systemd/system/${NB}`);
      const [nb, kubelet] = await Promise.all([show(c, NB), show(c, 'kubelet.service')]);
      expect([nb.ActiveState, nb.Result], why).toEqual(['active', 'success']);
      expect(kubelet.ActiveState, why).toBe('active');
      const status = await statusJson(c);
      expect(status.phases.find((p) => p.name === 'sandbox-image')!.facts).toMatchObject({
        image: PAUSE_LOCAL,
        source: `archive ${PAUSE_TAR}`,
      });
      expect((await ctrImages(c)).get(PAUSE_LOCAL)).toMatch(/io\.cri-containerd\.pinned=pinned/);
      log.push(
        `deb + install --mode standalone: ${NB} ${nb.Result}, pause from ${status.phases.find((p) => p.name === 'sandbox-image')!.facts.source}`,
      );
    } finally {
      await c.stop();
    }
  });
});
