/**
 * A Kubernetes worker node for the e2e boot tests, as bootSystemd options: Debian's own
 * containerd.service (1.6, or 1.7 through a drop-in) with its root on a tmpfs and registry trust in
 * certs.d; the shipped node-bootstrap.service and kubelet gate drop-in (from systemd/) with a drop-in
 * that runs the built bundle from the repo bound at /srv/node-bootstrap and points the AWS SDK at the
 * testbed; a kubelet stand-in (boot-kubelet.ts) as kubelet.service.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { ECR_HOST, PAUSE_IMAGE, type Testbed } from '../../testbed/index.js';
import type { BootOptions, FileSpec, SystemdContainer } from '../harness.js';

export const REPO = join(import.meta.dirname, '..', '..', '..');
export const INSIDE = '/srv/node-bootstrap';
export const BUNDLE = `${INSIDE}/dist/node-bootstrap.mjs`;
export const CONFIG = '/etc/node-bootstrap/config.yaml';
export const STATE_DIR = '/run/node-bootstrap';
export const MARKER = `${STATE_DIR}/gates-passed`;
export const SOCKET = '/run/containerd/containerd.sock';
export const STANDIN = '/usr/local/lib/e2e/kubelet-standin.cjs';
export { ECR_HOST, PAUSE_IMAGE };

export type Unit = 'containerd.service' | 'node-bootstrap.service' | 'kubelet.service';
export const ALL: Unit[] = ['containerd.service', 'node-bootstrap.service', 'kubelet.service'];

/** The units as shipped in systemd/: node-bootstrap.service and kubelet's gate drop-in. */
export function shippedUnits(): { service: string; kubeletDropIn: string } {
  return {
    service: readFileSync(join(REPO, 'systemd', 'node-bootstrap.service'), 'utf8'),
    kubeletDropIn: readFileSync(join(REPO, 'systemd', 'kubelet.service.d', '10-node-bootstrap.conf'), 'utf8'),
  };
}

/** kubelet.service for the stand-in, shaped like the EKS AMI's (ordered after containerd). */
const KUBELET_UNIT = `[Unit]
Description=kubelet stand-in (e2e): the pinned sandbox image through CRI, then stays up
Wants=containerd.service
After=containerd.service

[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/bin/node ${STANDIN} ${INSIDE}/proto ${SOCKET}
TimeoutStartSec=20s

[Install]
WantedBy=multi-user.target
`;

function containerdConfig(): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "${SOCKET}"

[${cri}]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
[${cri}.registry]
  config_path = "/etc/containerd/certs.d"
`;
}

/** certs.d for a registry host served by `server` (both the top-level keys and the [host] table). */
export function hostsToml(server: string, caFile: string): string {
  return `server = "${server}"\nca = "${caFile}"\n\n[host."${server}"]\n  capabilities = ["pull", "resolve"]\n  ca = "${caFile}"\n`;
}

let standin: Promise<string> | undefined;
/** The kubelet stand-in bundled into one CommonJS file (grpc-js and proto-loader included). */
export function kubeletStandin(): Promise<string> {
  standin ??= build({
    entryPoints: [join(import.meta.dirname, 'boot-kubelet.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    logLevel: 'warning',
  }).then((r) => r.outputFiles[0]!.text);
  return standin;
}

/** Where the shipped unit may write node_exporter textfile metrics (metrics.textfileDir default). */
export const TEXTFILE_DIR = '/var/lib/node_exporter/textfile_collector';

export interface WorkerNodeOptions {
  name: string;
  tb: Testbed;
  /** Default 1.7 (reports pins in CRI); 1.6 is Debian 12's (label only). */
  containerd?: '1.6' | '1.7';
  /** Where containerd pulls the ECR host from (default the testbed registry). */
  registry?: string;
  /** Units enabled at boot (default all three). */
  enable?: Unit[];
  /** More lines for a containerd.service drop-in ([Service] section), e.g. a slow ExecStartPre. */
  containerdService?: string;
  /** Replaces containerd's config.toml (e.g. a broken one). */
  containerdConfig?: string;
  /** timeouts.<phase> for node-bootstrap's config.yaml. */
  timeouts?: Record<string, string>;
  /** Also run e2e-status.service: every STATUS= node-bootstrap shows, in the journal (see STATUS_RECORDER). */
  recordStatus?: boolean;
}

/**
 * STATUS= is not journaled: this unit records node-bootstrap's StatusText in the journal
 * (identifier e2e-status) as it changes, polled every 100 ms through PID 1's private socket, from
 * before node-bootstrap starts. Statuses shorter than that can be missed; waits cannot.
 */
export const STATUS_RECORDER = `[Unit]
Description=e2e: records node-bootstrap's STATUS= lines in the journal
Before=node-bootstrap.service

[Service]
SyslogIdentifier=e2e-status
ExecStart=/bin/sh -c 'last=; while :; do s=$(systemctl show -P StatusText node-bootstrap.service); if [ "$s" != "$last" ]; then echo "$s"; last=$s; fi; sleep 0.1; done'

[Install]
WantedBy=multi-user.target
`;

let startupCache: Record<string, FileSpec> | undefined;
/**
 * The startup cache `node-bootstrap install` makes at image-build time (the heavy parts and their V8
 * code caches, for the node the container runs: the host's), as files of the image. Made once.
 */
function startupCacheFiles(): Record<string, FileSpec> {
  if (startupCache) return startupCache;
  const root = mkdtempSync(join(tmpdir(), 'nb-e2e-image-'));
  try {
    execFileSync(process.execPath, [join(REPO, 'dist', 'node-bootstrap.mjs'), 'install', '--root', root], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: 'ignore',
    });
    const files: Record<string, FileSpec> = {};
    const dir = join(root, 'var', 'cache', 'node-bootstrap');
    for (const id of readdirSync(dir))
      for (const f of readdirSync(join(dir, id))) {
        const path = join(dir, id, f);
        files[`/var/cache/node-bootstrap/${id}/${f}`] = {
          content: readFileSync(path),
          mode: statSync(path).mode & 0o777,
        };
      }
    startupCache = files;
    return files;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

export async function workerNode(o: WorkerNodeOptions): Promise<BootOptions> {
  const { tb } = o;
  if (!tb.registry || !tb.ecr || !tb.imds || !tb.pki)
    throw new Error('workerNode: needs registry, ECR, IMDS');
  const units = shippedUnits();
  const certs = `/etc/containerd/certs.d/${ECR_HOST}`;
  const version = o.containerd ?? '1.7';
  const bin17 = `${INSIDE}/.cache/containerd-1.7/usr/bin`;
  const containerdDropIn = [
    '[Service]',
    ...(version === '1.7'
      ? [
          'ExecStart=',
          `ExecStart=${bin17}/containerd`,
          `Environment=PATH=${bin17}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        ]
      : []),
    ...(o.containerdService ? [o.containerdService] : []),
  ].join('\n');
  const env = ['AWS_ENDPOINT_URL_ECR', 'AWS_EC2_METADATA_SERVICE_ENDPOINT', 'AWS_CONFIG_FILE']
    .concat('AWS_SHARED_CREDENTIALS_FILE')
    .map((k) => `Environment="${k}=${tb.env[k]}"`);
  const timeouts = {
    'containerd-unit': '30s',
    'containerd-socket': '10s',
    cri: '10s',
    'sandbox-image': '20s',
    kubelet: '15s',
    ...o.timeouts,
  };
  return {
    name: o.name,
    privateNetwork: false,
    tmpfs: ['/var/lib/containerd'],
    binds: [{ host: REPO, inside: INSIDE, readOnly: true }],
    enable: [...(o.enable ?? ALL), ...(o.recordStatus ? ['e2e-status.service'] : [])],
    units: {
      'node-bootstrap.service': units.service,
      'kubelet.service': KUBELET_UNIT,
      ...(o.recordStatus ? { 'e2e-status.service': STATUS_RECORDER } : {}),
    },
    files: {
      '/etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf': units.kubeletDropIn,
      '/etc/systemd/system/node-bootstrap.service.d/50-e2e.conf': [
        '[Service]',
        'ExecStart=',
        `ExecStart=/usr/bin/node ${BUNDLE} run --config ${CONFIG}`,
        ...env,
        '',
      ].join('\n'),
      '/etc/systemd/system/containerd.service.d/50-e2e.conf': `${containerdDropIn}\n`,
      '/etc/containerd/config.toml': o.containerdConfig ?? containerdConfig(),
      [`${certs}/hosts.toml`]: hostsToml(o.registry ?? `https://${tb.registry.host}`, `${certs}/ca.crt`),
      [`${certs}/ca.crt`]: readFileSync(tb.pki.caFile, 'utf8'),
      [CONFIG]: `timeouts:\n${Object.entries(timeouts)
        .map(([k, v]) => `  ${k}: ${v}`)
        .join('\n')}\n`,
      [STANDIN]: await kubeletStandin(),
      // node_exporter's textfile directory, as its package leaves it: node-bootstrap writes there.
      [`${TEXTFILE_DIR}/.keep`]: '',
      ...startupCacheFiles(),
    },
  };
}

export interface UnitShow {
  ActiveState: string;
  SubState: string;
  Result: string;
  StatusText: string;
  /** µs on CLOCK_MONOTONIC (the same clock inside and outside the container); 0 = never. */
  ActiveEnterTimestampMonotonic: number;
  InactiveExitTimestampMonotonic: number;
  ExecMainStartTimestampMonotonic: number;
  ExecMainExitTimestampMonotonic: number;
  /** 1 = exited (ExecMainStatus is its exit code), 2 = killed, 3 = dumped core (ExecMainStatus: the signal). */
  ExecMainCode: number;
  ExecMainStatus: number;
  NRestarts: number;
}

const PROPS: (keyof UnitShow)[] = [
  'ActiveState',
  'SubState',
  'Result',
  'StatusText',
  'ActiveEnterTimestampMonotonic',
  'InactiveExitTimestampMonotonic',
  'ExecMainStartTimestampMonotonic',
  'ExecMainExitTimestampMonotonic',
  'ExecMainCode',
  'ExecMainStatus',
  'NRestarts',
];

/** `systemctl show` of a unit, typed. */
export async function show(c: SystemdContainer, unit: string): Promise<UnitShow> {
  const r = await c.exec(['systemctl', 'show', unit, ...PROPS.map((p) => `--property=${p}`)], {
    check: true,
  });
  const out: Record<string, string | number> = {};
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i < 0) continue;
    const k = line.slice(0, i) as keyof UnitShow;
    const v = line.slice(i + 1);
    out[k] = /Timestamp|Code$|Status$|NRestarts/.test(k) && k !== 'StatusText' ? Number(v || 0) : v;
  }
  for (const p of PROPS) out[p] ??= p.endsWith('Monotonic') ? 0 : '';
  return out as unknown as UnitShow;
}

/** Median and 90th percentile (nearest rank) of a list of numbers. */
export function stats(xs: number[]): { n: number; median: number; p90: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const rank = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  const median = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { n: s.length, median, p90: rank(0.9), min: s[0]!, max: s.at(-1)! };
}

/** `ctr images ls` inside: name → labels. */
export async function ctrImages(c: SystemdContainer): Promise<Map<string, string>> {
  const r = await c.exec(['ctr', '--connect-timeout', '2s', '-n', 'k8s.io', 'images', 'ls'], { check: true });
  const out = new Map<string, string>();
  for (const line of r.stdout.split('\n').slice(1).filter(Boolean)) {
    const cols = line.trim().split(/\s+/);
    out.set(cols[0]!, cols.at(-1)!);
  }
  return out;
}
