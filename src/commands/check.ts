/**
 * `check`: a read-only preflight of a node or a node image. Gathers facts (files under --root,
 * containerd over CRI and its images API, IMDSv2, ECR GetAuthorizationToken) with short deadlines
 * and hands them to core/checks.ts for the verdicts. Writes nothing, starts nothing, changes no
 * state: it works with containerd or systemd absent (their checks say "skip: <why>").
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContainerdClient } from '../adapters/containerd.js';
import { createContainerdClient, PINNED_LABEL } from '../adapters/containerd.js';
import type { CriClient } from '../adapters/cri.js';
import { createCriClient } from '../adapters/cri.js';
import { createEcr } from '../adapters/ecr.js';
import { createImds, ImdsError } from '../adapters/imds.js';
import { createNodeFiles, type NodeFiles } from '../adapters/node-files.js';
import { probeSocket } from '../adapters/unix-socket.js';
import { GATE_MARKER } from '../boot.js';
import {
  type Config,
  DEFAULT_CONFIG_FILE,
  DEFAULT_CONTAINERD_CONFIG,
  DEFAULT_STATE_DIR,
  loadConfig,
} from '../config.js';
import {
  CHECK_IDS,
  type CheckId,
  type CheckResult,
  type ConfigFacts,
  configCheck,
  containerdVersionCheck,
  diskCheck,
  type EcrFacts,
  ecrCheck,
  exitCode,
  formatReport,
  type ImdsFacts,
  imdsCheck,
  type PausePinnedFacts,
  type ProxyFacts,
  pausePinnedCheck,
  proxyCheck,
  type ResolvConfFacts,
  report,
  resolvConfCheck,
  type SandboxImageFacts,
  type StartupCacheFacts,
  sandboxImageCheck,
  sandboxTarget,
  skippedForConfig,
  startupCacheCheck,
  unitsCheck,
} from '../core/checks.js';
import { type Found, readContainerdConfig } from '../core/containerd-config.js';
import { capabilities } from '../core/containerd-version.js';
import { criVerdict } from '../core/cri-status.js';
import { parseImageRef } from '../core/image-ref.js';
import { discoverKubelet, type KubeletSettings, type Setting } from '../core/kubelet-settings.js';
import { parseResolvConf, resolvConfProblems } from '../core/resolv-conf.js';
import { parseEcrHost } from '../core/sandbox-image.js';
import {
  type LoadedUnit,
  lastSetting,
  listSetting,
  loadUnit,
  splitWords,
  UNIT_DIRS,
} from '../core/unit-files.js';
import { readEnv } from '../env.js';
import { BootError, EXIT, toBootError } from '../errors.js';
import { STARTUP_CACHE_DIR, startupCacheState } from '../payload.js';
import { REPAIR_ENV_FILE } from '../phases/resolv-conf.js';
import { VERSION } from '../version.js';
import { withRenderedSocket } from './adapters.js';
import { containerdProxy, type NetworkFacts, readNetwork } from './network.js';

type Values = Record<string, string | boolean | undefined>;

const DEFAULT_CONTAINERD_ROOT = '/var/lib/containerd';
/** Per peer call: a check answers in seconds, never hangs on a peer. */
const CALL_MS = 3_000;
const NOT_FOUND = 5;

/** A call's signal: its own deadline, and the command's (SIGTERM/SIGINT). */
type Deadline = (ms?: number) => AbortSignal;
const errorFacts = (err: unknown) => {
  const e = toBootError(err);
  return { code: e.code, message: e.message, hint: e.hint, retryable: e.retryable };
};
const why = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/** What containerd's rendered config says (when CRI cannot): its sandbox reference and root. */
function renderedFacts(
  files: NodeFiles,
  file: string,
): { sandboxImage?: Found<string>; root?: Found<string>; why: string } {
  try {
    const c = readContainerdConfig(files, file);
    if (c.files.length === 0) return { why: `no ${file}` };
    return {
      ...(c.sandboxImage ? { sandboxImage: c.sandboxImage } : {}),
      ...(c.root.where.startsWith('containerd') ? {} : { root: c.root }),
      why: `${c.files.join(', ')} set${c.files.length === 1 ? 's' : ''} none`,
    };
  } catch (err) {
    return { why: why(err) };
  }
}

interface Containerd {
  up: boolean;
  why: string;
  version?: string;
  cri?: CriClient;
  images?: ContainerdClient;
  /** From CRI Status verbose. */
  configuredSandboxImage?: string;
  rootDir?: string;
  criWhy?: string;
}

async function probeContainerd(socket: string, deadline: Deadline): Promise<Containerd> {
  const state = await probeSocket(socket, deadline()).catch((err: unknown) => `error: ${why(err)}` as const);
  if (state !== 'ready')
    return {
      up: false,
      why: `containerd is not running (socket ${socket} ${state === 'missing' ? 'does not exist' : state === 'refused' ? 'refuses connections' : state})`,
    };
  const cri = createCriClient(socket, { waitForReady: false });
  const images = createContainerdClient(socket, { waitForReady: false });
  const c: Containerd = { up: true, why: '', cri, images };
  try {
    c.version = (await images.version(deadline())).version;
  } catch (err) {
    return { ...c, up: false, why: `containerd at ${socket} does not answer its Version API: ${why(err)}` };
  }
  try {
    const st = await cri.status(deadline(), true);
    const v = criVerdict(st.conditions, st.info);
    c.configuredSandboxImage = v.sandboxImage;
    const cfg = st.info.config ? (JSON.parse(st.info.config) as { containerdRootDir?: unknown }) : {};
    if (typeof cfg.containerdRootDir === 'string') c.rootDir = cfg.containerdRootDir;
  } catch (err) {
    c.criWhy = `CRI at ${socket} does not answer: ${why(err)}`;
  }
  return c;
}

/** The config as `run` would load it; under --root, the image's own config file. */
function readConfig(v: Values, root: string): { cfg?: Config; facts: ConfigFacts } {
  try {
    let file = v.config as string | undefined;
    if (!file && root !== '/') {
      file = join(root, DEFAULT_CONFIG_FILE);
      // An image without a config file: every default applies (/dev/null reads as an empty YAML document).
      if (!existsSync(file))
        return {
          cfg: { ...loadConfig({ file: '/dev/null' }), sources: [] },
          facts: { ok: true, sources: [] },
        };
    }
    const cfg = loadConfig({ file });
    return { cfg, facts: { ok: true, sources: cfg.sources } };
  } catch (err) {
    if (!(err instanceof BootError)) throw err;
    return { facts: { ok: false, error: errorFacts(err) } };
  }
}

function resolvConfFacts(
  files: NodeFiles,
  kubelet: KubeletSettings,
  override: string | undefined,
  containerd: Containerd,
): ResolvConfFacts {
  // --resolv-conf PATH: a path on the machine check runs on, as typed.
  const choice: Setting<string> = override
    ? { value: override, source: { kind: 'cli', where: '--resolv-conf' } }
    : kubelet.resolvConf;
  const reader = override ? createNodeFiles('/') : files;
  const content = choice.value === '' ? undefined : reader.read(choice.value);
  const problems = resolvConfProblems({
    choice,
    content,
    ...(containerd.version ? { containerd: capabilities(containerd.version) } : {}),
    clusterDomain: kubelet.clusterDomain?.value !== '',
  });
  const nameservers = content?.ok ? parseResolvConf(content.text).nameservers.map((n) => n.address) : [];
  return { choice, problems, nameservers, notes: kubelet.notes };
}

async function imdsFacts(
  cfg: Config | undefined,
  deadline: Deadline,
): Promise<{ facts: ImdsFacts; region?: string }> {
  const env = cfg?.env ?? readEnv();
  if (env.imdsDisabled) return { facts: { disabled: true } };
  const imds = createImds({ endpoint: env.imdsEndpoint, disabled: false, timeoutMs: 1_000 });
  const endpoint = env.imdsEndpoint ?? 'http://169.254.169.254';
  try {
    const id = await imds.identity(deadline());
    try {
      const role = await imds.role(deadline());
      return {
        facts: { disabled: false, endpoint, region: id.region, instanceId: id.instanceId, role },
        region: id.region,
      };
    } catch (err) {
      return {
        facts: {
          disabled: false,
          endpoint,
          region: id.region,
          instanceId: id.instanceId,
          roleError: errorFacts(err),
        },
        region: id.region,
      };
    }
  } catch (err) {
    if (!(err instanceof ImdsError)) throw err;
    return { facts: { disabled: false, endpoint, error: errorFacts(err) } };
  }
}

/** True when the unit's command is `node-bootstrap run` (not --observe), whatever the binary's path. */
function runsBoot(u: LoadedUnit): boolean {
  const exec = lastSetting(u, 'Service', 'ExecStart')?.value;
  const words = exec ? splitWords(exec) : [];
  return (
    words.some((w) => /(^|\/)node-bootstrap(\.mjs)?$/.test(w.replace(/^[@\-:+!]+/, ''))) &&
    words.includes('run') &&
    !words.includes('--observe')
  );
}

/**
 * The unit that runs the boot: nodeadm-run.service when `install --mode nodeadm` put node-bootstrap
 * in its slot (its drop-in replaced ExecStart=), else node-bootstrap.service.
 */
function bootUnit(files: NodeFiles): LoadedUnit {
  const nodeadm = loadUnit(files, 'nodeadm-run.service');
  if (nodeadm.file && !nodeadm.masked && runsBoot(nodeadm)) return nodeadm;
  return loadUnit(files, 'node-bootstrap.service');
}

function unitsFacts(files: NodeFiles, root: string, cfg: Config | undefined) {
  const systemd = UNIT_DIRS.some((d) => files.list(d) !== undefined);
  const nodeBootstrap = bootUnit(files);
  const kubelet = loadUnit(files, cfg?.kubelet.unit ?? 'kubelet.service');
  const targets = listSetting(nodeBootstrap, 'Install', 'WantedBy').flatMap((d) =>
    d.value.split(/\s+/).filter(Boolean),
  );
  const enabled = targets.map((target) => ({
    target,
    linked: UNIT_DIRS.some((d) => (files.list(`${d}/${target}.wants`) ?? []).includes(nodeBootstrap.name)),
  }));
  const exec = lastSetting(nodeBootstrap, 'Service', 'ExecStart')?.value;
  const bin = exec ? splitWords(exec)[0]?.replace(/^[@\-:+!]+/, '') : undefined;
  const observe = loadUnit(files, 'node-bootstrap-observe.service');
  const observeTargets = listSetting(observe, 'Install', 'WantedBy').flatMap((d) =>
    d.value.split(/\s+/).filter(Boolean),
  );
  return {
    root,
    systemd,
    nodeBootstrap,
    kubelet,
    enabled,
    ...(bin?.startsWith('/') ? { binary: { path: bin, exists: files.exists(bin) } } : {}),
    marker: join(DEFAULT_STATE_DIR, GATE_MARKER),
    ...(observe.file && !observe.masked
      ? {
          observe: {
            unit: observe.name,
            enabled: observeTargets.some((t) =>
              UNIT_DIRS.some((d) => (files.list(`${d}/${t}.wants`) ?? []).includes(observe.name)),
            ),
          },
        }
      : {}),
    ...(cfg?.kubelet.resolvConfPolicy === 'repair'
      ? { repairEnvFile: join(DEFAULT_STATE_DIR, REPAIR_ENV_FILE) }
      : {}),
  };
}

async function pauseFacts(
  cfg: Config,
  containerd: Containerd,
  target: string | undefined,
  targetWhy: string,
  deadline: Deadline,
): Promise<PausePinnedFacts> {
  if (!containerd.up || !containerd.cri || !containerd.images) return { skip: containerd.why };
  if (containerd.criWhy) return { skip: containerd.criWhy };
  if (!target) return { skip: targetWhy };
  const ns = cfg.containerd.namespace;
  const image = await containerd.cri.imageStatus(target, deadline());
  let label: string | undefined;
  try {
    label = (await containerd.images.getImage(target, ns, deadline())).labels[PINNED_LABEL];
  } catch (err) {
    if ((err as { code?: number }).code !== NOT_FOUND) throw err;
  }
  return {
    target,
    namespace: ns,
    image: image ? { id: image.id, pinned: image.pinned } : null,
    ...(label ? { label } : {}),
    caps: capabilities(containerd.version ?? ''),
    ...(containerd.configuredSandboxImage ? { configured: containerd.configuredSandboxImage } : {}),
  };
}

async function ecrFacts(
  cfg: Config,
  target: string | undefined,
  targetWhy: string,
  deadline: Deadline,
  net: NetworkFacts,
): Promise<EcrFacts> {
  if (!target) return { skip: targetWhy };
  const host = parseImageRef(target)?.host;
  const ecr = host ? parseEcrHost(host) : undefined;
  if (!ecr) return { skip: `the sandbox image ${target} is not in a private ECR registry` };
  const imds = cfg.env.imdsDisabled
    ? undefined
    : createImds({ endpoint: cfg.env.imdsEndpoint, timeoutMs: 1_000 });
  const client = createEcr({
    region: ecr.region,
    maxAttempts: 2,
    requestTimeoutMs: 5_000,
    ...(imds ? { imds } : {}),
    proxy: async () => net.settings,
  });
  try {
    const t = await client.getAuthorizationToken(ecr.account, deadline(12_000));
    return { account: ecr.account, region: ecr.region, expiresAt: t.expiresAt };
  } catch (err) {
    return { account: ecr.account, region: ecr.region, error: errorFacts(err) };
  }
}

function proxyFacts(cfg: Config, files: NodeFiles, net: NetworkFacts): ProxyFacts {
  const c = containerdProxy(files, cfg.containerd.unit);
  return {
    settings: net.settings,
    verdict: net.verdict,
    problems: net.problems,
    nodeConfigFrom: net.nodeConfigFrom,
    containerd: { unit: cfg.containerd.unit, found: c.unitFound, settings: c.settings },
  };
}

export async function gatherChecks(v: Values, signal: AbortSignal): Promise<CheckResult[]> {
  const deadline: Deadline = (ms = CALL_MS) => AbortSignal.any([signal, AbortSignal.timeout(ms)]);
  const root = (v.root as string | undefined) ?? '/';
  if (!root.startsWith('/') || !existsSync(root) || !statSync(root).isDirectory())
    throw new BootError('USAGE', `--root ${root}: expected an absolute path to a directory`);
  const files = createNodeFiles(root);
  const { cfg, facts: config } = readConfig(v, root);
  const out = new Map<CheckId, CheckResult>();
  out.set('config', configCheck(config));

  // The node's proxy settings (and NodeConfig from user data) are read first: the ECR check uses them.
  const network = cfg
    ? readNetwork(
        cfg,
        cfg.env.imdsDisabled ? undefined : createImds({ endpoint: cfg.env.imdsEndpoint, timeoutMs: 1_000 }),
        deadline(),
      )
    : undefined;
  // Independent peers first, concurrently: containerd and IMDS.
  const [containerd, imds] = await Promise.all([
    cfg
      ? // containerd on this machine: its socket as `run` finds it (the rendered [grpc] address when
        // containerd.socket is unset; under --root the image's config says nothing about this machine).
        probeContainerd((root === '/' ? withRenderedSocket(cfg) : cfg).containerd.socket, deadline)
      : Promise.resolve<Containerd>({ up: false, why: 'config invalid' }),
    imdsFacts(cfg, deadline),
  ]);
  try {
    out.set('imds', imdsCheck(imds.facts));
    out.set('units', unitsCheck(unitsFacts(files, root, cfg)));

    let kubelet: KubeletSettings | undefined;
    let kubeletError: unknown;
    try {
      kubelet = discoverKubelet(files, {
        ...(cfg?.kubelet.resolvConf ? { resolvConf: cfg.kubelet.resolvConf } : {}),
        ...(cfg?.kubelet.config ? { kubeletConfig: cfg.kubelet.config } : {}),
        unit: cfg?.kubelet.unit ?? 'kubelet.service',
      });
    } catch (err) {
      if (!(err instanceof BootError)) throw err;
      kubeletError = err;
    }

    // disk: containerd's root (CRI, else its config.toml, else the default) against kubelet's GC thresholds.
    const toml = renderedFacts(files, cfg?.containerd.config ?? DEFAULT_CONTAINERD_CONFIG);
    const dir: Setting<string> = containerd.rootDir
      ? { value: containerd.rootDir, source: { kind: 'default', where: "containerd's CRI status" } }
      : toml.root
        ? { value: toml.root.value, source: { kind: 'default', where: toml.root.where } }
        : { value: DEFAULT_CONTAINERD_ROOT, source: { kind: 'default', where: "containerd's default root" } };
    const gcDefault = (value: number, name: string): Setting<number> => ({
      value,
      source: { kind: 'default', where: `kubelet's default ${name}` },
    });
    out.set(
      'disk',
      diskCheck({
        dir,
        // A directory containerd reported is a live path on this machine, not one under --root.
        usage: (containerd.rootDir ? createNodeFiles('/') : files).usage(dir.value),
        high: kubelet?.imageGCHigh ?? gcDefault(85, 'imageGCHighThresholdPercent'),
        low: kubelet?.imageGCLow ?? gcDefault(80, 'imageGCLowThresholdPercent'),
      }),
    );

    if (!cfg) {
      for (const id of [
        'resolv-conf',
        'sandbox-image',
        'containerd-version',
        'pause-pinned',
        'ecr',
        'proxy',
      ] as const)
        out.set(id, skippedForConfig(id));
    } else {
      out.set(
        'resolv-conf',
        resolvConfCheck(
          kubelet
            ? resolvConfFacts(files, kubelet, v['resolv-conf'] as string | undefined, containerd)
            : { error: errorFacts(kubeletError) },
        ),
      );
      out.set(
        'containerd-version',
        containerdVersionCheck(
          containerd.up ? { up: true, version: containerd.version! } : { up: false, why: containerd.why },
        ),
      );

      const region: Setting<string> | undefined = cfg.region
        ? { value: cfg.region, source: { kind: 'node-bootstrap', where: 'region in config' } }
        : cfg.env.awsRegion
          ? { value: cfg.env.awsRegion, source: { kind: 'default', where: 'AWS_REGION' } }
          : imds.region
            ? { value: imds.region, source: { kind: 'default', where: 'IMDS' } }
            : undefined;
      const configured = containerd.configuredSandboxImage
        ? { image: containerd.configuredSandboxImage, from: 'CRI status' }
        : toml.sandboxImage
          ? { image: toml.sandboxImage.value, from: toml.sandboxImage.where }
          : undefined;
      const sandbox: SandboxImageFacts = {
        ...(region
          ? { region }
          : { regionWhy: 'no `region` in config, no AWS_REGION, and IMDS did not answer' }),
        settings: cfg.sandboxImage,
        ...(configured ? { configured } : {}),
        configuredWhy: `${containerd.up ? (containerd.criWhy ?? 'CRI reports none') : containerd.why}, and ${toml.why}`,
      };
      out.set('sandbox-image', sandboxImageCheck(sandbox));

      // The image the sandbox-image phase would ensure; without a region, the one containerd is set to use.
      let target: string | undefined;
      let targetWhy = "the sandbox image is unknown (no region, and containerd's sandbox_image is unknown)";
      try {
        target = region ? sandboxTarget(sandbox).target : configured?.image;
      } catch (err) {
        targetWhy = `the sandbox image does not resolve (${(err as { code?: string }).code ?? 'error'}: see \`sandbox-image\`)`;
      }
      const net = (await network)!;
      const [pause, ecr] = await Promise.all([
        pauseFacts(cfg, containerd, target, targetWhy, deadline).catch((err: unknown) => ({
          skip: `containerd: ${why(err)}`,
        })),
        ecrFacts(cfg, target, targetWhy, deadline, net),
      ]);
      out.set('pause-pinned', pausePinnedCheck(pause));
      out.set('ecr', ecrCheck(ecr));
      out.set('proxy', proxyCheck(proxyFacts(cfg, files, net)));
    }
    out.set('startup-cache', startupCacheCheck(startupCacheFacts(root)));
  } finally {
    containerd.cri?.close();
    containerd.images?.close();
  }
  return CHECK_IDS.map((id) => out.get(id)!);
}

/** The startup cache of this build under the root, as a boot with this node would read it. */
function startupCacheFacts(root: string): StartupCacheFacts {
  const dir = join(root, STARTUP_CACHE_DIR);
  // In the bundle import.meta.url is the bundle itself (scripts/build.mjs); from src/ there is no payload.
  const self = fileURLToPath(import.meta.url);
  const parts = self.endsWith('.mjs') ? startupCacheState(self, dir) : undefined;
  return { dir, v8: process.versions.v8, ...(parts ? { parts } : {}) };
}

export async function check(v: Values, signal: AbortSignal): Promise<number> {
  // Process warnings (the AWS SDK's Node 20 notice) as one line each; vm's experimental loader says nothing.
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if (w.name !== 'ExperimentalWarning')
      process.stderr.write(`node-bootstrap: ${w.name}: ${w.message.replace(/\s+/g, ' ').trim()}\n`);
  });
  const r = report(await gatherChecks(v, signal));
  process.stdout.write(
    v.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatReport(r, `node-bootstrap ${VERSION} check`)}\n`,
  );
  const code = exitCode(r);
  return code === 0 ? EXIT.ok : code === 1 ? EXIT.checkFailed : EXIT.usage;
}
