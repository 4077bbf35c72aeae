/**
 * `node-bootstrap check`: verdicts from gathered facts. Pure: commands/check.ts reads the node
 * (files, containerd, IMDS, ECR) and hands the facts here; every verdict is pass, warn, fail or skip
 * (its peer is absent), with a message and, unless it passed, what exactly to change.
 */
import type { SandboxSource } from '../config.js';
import type { ContainerdCapabilities } from './containerd-version.js';
import { capabilities, parseVersion } from './containerd-version.js';
import type { Setting } from './kubelet-settings.js';
import { hasProxy, type NoProxyVerdict, type ProxySettings, redactProxy } from './proxy.js';
import { hasErrors, type Problem } from './resolv-conf.js';
import { resolveSandboxImage } from './sandbox-image.js';
import { isLocalOnly, planSandboxImage } from './sandbox-plan.js';
import { type LoadedUnit, lastSetting, listSetting, unitNames } from './unit-files.js';

export const CHECK_IDS = [
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
  'startup-cache',
] as const;
export type CheckId = (typeof CHECK_IDS)[number];
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  id: CheckId;
  status: CheckStatus;
  message: string;
  /** What to change ('' when there is nothing to do). */
  fix: string;
}

/** A failure as BootError.toJSON() gives it. */
export interface ErrorFacts {
  code: string;
  message: string;
  hint: string;
  retryable?: boolean;
}

const result = (id: CheckId, status: CheckStatus, message: string, fix = ''): CheckResult => ({
  id,
  status,
  message,
  fix,
});

// ── config ─────────────────────────────────────────────────────────────────────────────────────

export type ConfigFacts = { ok: true; sources: string[] } | { ok: false; error: ErrorFacts };

export function configCheck(f: ConfigFacts): CheckResult {
  if (!f.ok) return result('config', 'fail', `${f.error.code}: ${f.error.message}`, f.error.hint);
  return result(
    'config',
    'pass',
    f.sources.length === 0 ? 'no config file: every default applies' : `valid: ${f.sources.join(', ')}`,
  );
}

/** The other checks that need a valid config report this instead of guessing with defaults. */
export const skippedForConfig = (id: CheckId): CheckResult =>
  result(id, 'skip', 'skip: the config is invalid (see `config`)');

// ── resolv-conf ───────────────────────────────────────────────────────────────────────────────

export type ResolvConfFacts =
  | { error: ErrorFacts }
  | { choice: Setting<string>; problems: Problem[]; nameservers: string[]; notes: string[] };

export function resolvConfCheck(f: ResolvConfFacts): CheckResult {
  if ('error' in f) return result('resolv-conf', 'fail', `${f.error.code}: ${f.error.message}`, f.error.hint);
  const { choice, problems } = f;
  const errors = problems.filter((p) => p.severity === 'error');
  const warnings = problems.filter((p) => p.severity === 'warning');
  const more = (n: number) => (n > 0 ? ` (and ${n} warning${n > 1 ? 's' : ''})` : '');
  if (hasErrors(problems))
    return result(
      'resolv-conf',
      'fail',
      `${errors.map((p) => p.message).join('; ')}${more(warnings.length)}`,
      errors[0]!.fix,
    );
  if (warnings.length > 0)
    return result('resolv-conf', 'warn', warnings.map((p) => p.message).join('; '), warnings[0]!.fix);
  return result(
    'resolv-conf',
    'pass',
    `${choice.value} (${choice.source.where}): nameserver ${f.nameservers.join(', ')}`,
  );
}

// ── sandbox-image ─────────────────────────────────────────────────────────────────────────────

export interface SandboxImageFacts {
  /** The node's region and where it came from; undefined with why. */
  region?: Setting<string>;
  regionWhy?: string;
  settings: { tag: string; image?: string; fips: boolean; dualstack: boolean; source?: SandboxSource };
  /** containerd's configured sandbox_image: from CRI, or read from its config.toml. */
  configured?: { image: string; from: string };
  configuredWhy?: string;
}

/** The image the sandbox-image phase would ensure; throws what resolveSandboxImage/planSandboxImage throw. */
export function sandboxTarget(f: SandboxImageFacts): { wanted: string; target: string; warning?: string } {
  const region = f.region!.value;
  const resolved = resolveSandboxImage({
    region,
    tag: f.settings.tag,
    fips: f.settings.fips,
    dualstack: f.settings.dualstack,
  });
  const wanted = f.settings.image ?? resolved.image;
  const plan = planSandboxImage({
    region,
    wanted,
    explicit: f.settings.image !== undefined,
    configured: f.configured?.image,
    fallbacks: [],
    ...(f.settings.source ? { source: f.settings.source } : {}),
  });
  return { wanted, target: plan.target, ...(plan.warning ? { warning: plan.warning } : {}) };
}

export function sandboxImageCheck(f: SandboxImageFacts): CheckResult {
  if (!f.region)
    return result('sandbox-image', 'skip', `skip: the node's region is unknown (${f.regionWhy})`);
  let t: ReturnType<typeof sandboxTarget>;
  try {
    t = sandboxTarget(f);
  } catch (err) {
    const e = err as { code?: string; message: string; hint?: string };
    return result('sandbox-image', 'fail', `${e.code ?? 'ERROR'}: ${e.message}`, e.hint ?? '');
  }
  const where = `region ${f.region.value} (${f.region.source.where})`;
  if (!f.configured)
    return result(
      'sandbox-image',
      'skip',
      `skip: ${where} resolves to ${t.wanted}, but containerd's sandbox_image is unknown (${f.configuredWhy})`,
    );
  if (t.warning)
    return result(
      'sandbox-image',
      'warn',
      `${t.warning} (containerd's setting from ${f.configured.from}, ${where})`,
      `set sandbox_image = "${t.wanted}" in containerd's config.toml, or sandboxImage.image in node-bootstrap's config if ${f.configured.image} is intended`,
    );
  if (isLocalOnly(t.target))
    return result(
      'sandbox-image',
      'pass',
      `${t.target}: containerd's sandbox_image (${f.configured.from}), baked into the node image (sandboxImage.source ${f.settings.source}: its archive, then ${t.wanted} for ${where})`,
    );
  return result(
    'sandbox-image',
    'pass',
    `${t.target}: the ${f.settings.image ? 'configured (sandboxImage.image)' : 'regional'} image for ${where}, and containerd's sandbox_image (${f.configured.from})`,
  );
}

// ── containerd-version ────────────────────────────────────────────────────────────────────────

export type ContainerdFacts = { up: true; version: string } | { up: false; why: string };

export function containerdVersionCheck(f: ContainerdFacts): CheckResult {
  if (!f.up) return result('containerd-version', 'skip', `skip: ${f.why}`);
  const v = parseVersion(f.version);
  if (!v)
    return result(
      'containerd-version',
      'warn',
      `containerd reports version ${JSON.stringify(f.version)}, which does not parse: node-bootstrap assumes it honours no pinned label`,
      'run a released containerd (1.7.10 or later)',
    );
  const caps = capabilities(f.version);
  const resolv = caps.noResolvConfFallback
    ? 'no host resolv.conf fallback for an empty one (1.7.20+)'
    : 'still falls back to the host resolv.conf for an empty one (removed in 1.7.20: the resolv-conf check treats an empty file as an error on every version)';
  if (caps.pinsLabelledImages)
    return result(
      'containerd-version',
      'pass',
      `containerd ${f.version}: honours the pinned label on any image (1.7.10+); ${resolv}`,
    );
  if (caps.pinsSandboxImage)
    return result(
      'containerd-version',
      'warn',
      `containerd ${f.version} pins only the image named by its own sandbox_image (1.7.3+) and does not report pins of others (1.7.10+); ${resolv}`,
      'upgrade containerd to 1.7.10 or later',
    );
  return result(
    'containerd-version',
    'warn',
    `containerd ${f.version} ignores the io.cri-containerd.pinned label (needs 1.7.10+): kubelet's image GC can delete the pause image, and the re-pull needs ECR credentials (the guard timer restores it); ${resolv}`,
    'upgrade containerd to 1.7.10 or later',
  );
}

// ── pause-pinned ──────────────────────────────────────────────────────────────────────────────

export type PausePinnedFacts =
  | { skip: string }
  | {
      target: string;
      namespace: string;
      /** CRI ImageStatus: null when containerd does not have it. */
      image: { id: string; pinned: boolean } | null;
      /** The io.cri-containerd.pinned label in containerd's images API. */
      label?: string;
      caps: ContainerdCapabilities;
      configured?: string;
    };

export function pausePinnedCheck(f: PausePinnedFacts): CheckResult {
  if ('skip' in f) return result('pause-pinned', 'skip', `skip: ${f.skip}`);
  const guard =
    'run `node-bootstrap guard`: it pulls and pins the image (the guard timer runs it every few minutes)';
  if (!f.image)
    return result(
      'pause-pinned',
      'fail',
      `${f.target} is not in containerd (namespace ${f.namespace}): pods cannot start until it is pulled, and the pull needs ECR credentials`,
      `${guard}; for a node image, run it at build time or bake the image into sandboxImage.archive`,
    );
  const honoured = f.caps.pinsLabelledImages || (f.caps.pinsSandboxImage && f.configured === f.target);
  if (f.image.pinned)
    return result('pause-pinned', 'pass', `${f.target} is present (${f.image.id.slice(0, 19)}) and pinned`);
  if (honoured)
    return result(
      'pause-pinned',
      'fail',
      `${f.target} is present but not pinned${f.label === 'pinned' ? ' although it carries the pinned label' : ''}: kubelet's image GC can delete it`,
      guard,
    );
  if (f.label === 'pinned')
    return result(
      'pause-pinned',
      'warn',
      `${f.target} is present and labelled io.cri-containerd.pinned=pinned, but containerd ${f.caps.version} ignores the label: kubelet's image GC can still delete it`,
      'upgrade containerd to 1.7.10 or later (the guard timer restores the image meanwhile)',
    );
  return result(
    'pause-pinned',
    'fail',
    `${f.target} is present but not labelled io.cri-containerd.pinned=pinned (containerd ${f.caps.version})`,
    guard,
  );
}

// ── units ─────────────────────────────────────────────────────────────────────────────────────

export interface UnitsFacts {
  /** The root the unit directories were read under. */
  root: string;
  /** False when no systemd unit directory exists under the root. */
  systemd: boolean;
  nodeBootstrap: LoadedUnit;
  kubelet: LoadedUnit;
  /** node-bootstrap's [Install] WantedBy= targets and whether each has the .wants/ link. */
  enabled: { target: string; linked: boolean }[];
  /** node-bootstrap's ExecStart= binary and whether it exists under the root. */
  binary?: { path: string; exists: boolean };
  /** The gate marker kubelet's drop-in must require (<state-dir>/gates-passed). */
  marker: string;
  /** kubelet.resolvConfPolicy is repair: kubelet should read node-bootstrap's env file. */
  repairEnvFile?: string;
  /** node-bootstrap-observe.service (install --mode observe), when installed: enabled or not. */
  observe?: { unit: string; enabled: boolean };
}

/** Service types whose start job waits for node-bootstrap's own work to end (a cycle if kubelet waits for it). */
const WAITING_TYPES = new Set(['oneshot', 'notify', 'notify-reload', 'forking', 'dbus']);

export function unitsCheck(f: UnitsFacts): CheckResult {
  const under = f.root === '/' ? '' : ` under ${f.root}`;
  if (!f.systemd) return result('units', 'skip', `skip: no systemd unit directory${under}`);
  // The trial mode: by design nothing here starts or gates kubelet, so the rows below do not apply.
  if (f.observe?.enabled && !f.enabled.some((e) => e.linked))
    return result(
      'units',
      'warn',
      `observe mode: ${f.observe.unit} is enabled and ${f.nodeBootstrap.name} is not: node-bootstrap only reports after the node's own bootstrap; it neither checks before kubelet starts nor gates it`,
      'to let node-bootstrap run the boot: node-bootstrap install --mode nodeadm (AL2023-style images) or --mode standalone',
    );
  const fails: { msg: string; fix: string }[] = [];
  const warns: { msg: string; fix: string }[] = [];
  const nb = f.nodeBootstrap;
  const k = f.kubelet;
  const nbName = nb.name;
  const kName = k.name;
  if (!nb.file)
    fails.push({
      msg: `${nbName} is not installed${under}`,
      fix: `install systemd/${nbName} and systemd/kubelet.service.d/10-node-bootstrap.conf into /etc/systemd/system (node-bootstrap install) and enable ${nbName}`,
    });
  else if (nb.masked)
    fails.push({ msg: `${nbName} is masked (${nb.file})`, fix: `systemctl unmask ${nbName}` });
  if (!k.file)
    fails.push({
      msg: `${kName} is not installed${under}: nothing for node-bootstrap to start`,
      fix: 'install kubelet',
    });
  else if (k.masked) fails.push({ msg: `${kName} is masked (${k.file})`, fix: `systemctl unmask ${kName}` });

  if (nb.file && !nb.masked) {
    const links = f.enabled.filter((e) => e.linked);
    if (f.enabled.length === 0)
      fails.push({
        msg: `${nbName} has no [Install] WantedBy=: nothing starts it at boot, so kubelet never starts`,
        fix: `add WantedBy=multi-user.target to ${nb.file} and enable it`,
      });
    else if (links.length === 0)
      fails.push({
        msg: `${nbName} is not enabled (no ${f.enabled.map((e) => `${e.target}.wants/`).join(' or ')} link): nothing starts it at boot, so kubelet never starts`,
        fix: `systemctl enable ${nbName}${f.root === '/' ? '' : ` (systemctl --root=${f.root} enable ${nbName})`}`,
      });
    if (f.binary && !f.binary.exists)
      fails.push({
        msg: `${nbName} runs ${f.binary.path}, which does not exist${under}`,
        fix: `link ${f.binary.path} to dist/node-bootstrap.mjs (see the README's install section), or fix ExecStart= in ${nb.file}`,
      });
  }

  if (k.file && !k.masked) {
    // `|` (triggering) still gates; `!` (negated) would do the opposite.
    const gates = ['AssertPathExists', 'ConditionPathExists'].flatMap((key) =>
      listSetting(k, 'Unit', key).filter((d) => d.value.replace(/^\|/, '') === f.marker),
    );
    if (gates.length === 0)
      fails.push({
        msg: `${kName} is not gated on node-bootstrap: none of its drop-ins (${k.dropIns.join(', ') || 'none'}) has AssertPathExists=${f.marker}, so kubelet can start before the pause image and resolv.conf are checked`,
        fix: `run node-bootstrap install --mode standalone (or --mode nodeadm on nodeadm images): it puts the gate drop-in 10-node-bootstrap.conf into /etc/systemd/system/${kName}.d/`,
      });
    // The deadlock: node-bootstrap waits for kubelet's start job while kubelet is ordered after it.
    const type =
      lastSetting(nb, 'Service', 'Type')?.value ??
      (listSetting(nb, 'Service', 'ExecStart').length ? 'simple' : 'oneshot');
    const after = unitNames(k, 'Unit', 'After').filter((u) => u.name === nbName);
    const before = unitNames(nb, 'Unit', 'Before').filter((u) => u.name === kName);
    const order = [
      ...after.map((u) => `After=${nbName} in ${u.file}`),
      ...before.map((u) => `Before=${kName} in ${u.file}`),
    ];
    if (order.length > 0 && WAITING_TYPES.has(type))
      fails.push({
        msg: `boot deadlock: ${nbName} (Type=${type}) starts ${kName} and waits for its start job, while ${order.join(' and ')} makes kubelet's job wait for ${nbName}'s: both wait forever`,
        fix: `remove ${order.map((o) => o.split(' in ')[0]).join(' and ')} (${[...new Set([...after, ...before].map((u) => u.file))].join(', ')}): kubelet is gated by the marker instead`,
      });
    const deps = ['Requires', 'BindsTo', 'Requisite', 'PartOf'].flatMap((key) =>
      unitNames(k, 'Unit', key)
        .filter((u) => u.name === nbName)
        .map((u) => `${key}=${nbName} in ${u.file}`),
    );
    if (deps.length > 0 && order.length === 0)
      warns.push({
        msg: `${deps.join(', ')}: not a deadlock without ordering, but no gate either (systemd ignores a masked Requires= at boot); the marker is the gate`,
        fix: `remove ${deps.map((d) => d.split(' in ')[0]).join(', ')} from ${kName}`,
      });
    if (f.repairEnvFile) {
      const reads = listSetting(k, 'Service', 'EnvironmentFile').some(
        (d) => d.value.replace(/^-/, '') === f.repairEnvFile,
      );
      if (!reads)
        warns.push({
          msg: `kubelet.resolvConfPolicy is repair, but ${kName} does not read ${f.repairEnvFile}: repair then needs a drop-in under /run/systemd/system, which node-bootstrap.service (ProtectSystem=strict) cannot write`,
          fix: `add "EnvironmentFile=-${f.repairEnvFile}" under [Service] in ${kName}.d/10-node-bootstrap.conf`,
        });
    }
  }

  if (fails.length > 0)
    return result('units', 'fail', fails.map((x) => x.msg).join('; '), fails.map((x) => x.fix).join('; '));
  if (warns.length > 0)
    return result('units', 'warn', warns.map((x) => x.msg).join('; '), warns.map((x) => x.fix).join('; '));
  const gate = k.dropIns.find((d) => listSetting(k, 'Unit', 'AssertPathExists').some((x) => x.file === d));
  return result(
    'units',
    'pass',
    `${nbName} installed and enabled (${f.enabled
      .filter((e) => e.linked)
      .map((e) => e.target)
      .join(', ')}); ${kName} gated by ${gate ?? 'a drop-in'} on ${f.marker}; no ordering cycle`,
  );
}

// ── disk ──────────────────────────────────────────────────────────────────────────────────────

export interface DiskFacts {
  /** containerd's root (the image filesystem) and where that came from. */
  dir: Setting<string>;
  usage?: { path: string; totalBytes: number; availableBytes: number };
  high: Setting<number>;
  low: Setting<number>;
}

const GiB = 1024 ** 3;
const gib = (b: number) => `${(b / GiB).toFixed(1)} GiB`;

export function diskCheck(f: DiskFacts): CheckResult {
  if (!f.usage || f.usage.totalBytes === 0)
    return result('disk', 'skip', `skip: cannot measure the filesystem of ${f.dir.value}`);
  const { totalBytes: total, availableBytes: avail } = f.usage;
  // kubelet's image GC: usagePercent = 100 - available*100/capacity (integer division).
  const used = 100 - Math.floor((avail * 100) / total);
  const on = `${f.dir.value}${f.usage.path !== f.dir.value ? ` (measured at ${f.usage.path})` : ''}`;
  const stats = `${used}% used, ${gib(avail)} free of ${gib(total)}`;
  if (f.high.value >= 100)
    return result(
      'disk',
      'pass',
      `${on}: ${stats}; kubelet's image GC is off (imageGCHighThresholdPercent ${f.high.value})`,
    );
  const needed = Math.max(0, Math.ceil((total * (100 - f.low.value)) / 100 - avail));
  if (used >= f.high.value)
    return result(
      'disk',
      'fail',
      `${on}: ${stats}, at or above kubelet's imageGCHighThresholdPercent ${f.high.value} (${f.high.source.where}): kubelet starts deleting images as soon as it runs, down to ${f.low.value}% (imageGCLowThresholdPercent), pre-pulled images first`,
      `free ${gib(needed)} or more on ${f.usage.path}, or grow the volume; or raise imageGCHighThresholdPercent/imageGCLowThresholdPercent in kubelet's config`,
    );
  if (used >= f.low.value)
    return result(
      'disk',
      'warn',
      `${on}: ${stats}, above kubelet's imageGCLowThresholdPercent ${f.low.value}: GC starts at ${f.high.value}%, a few more pulls away`,
      `free ${gib(needed)} on ${f.usage.path} (or grow the volume) to get under ${f.low.value}%`,
    );
  return result('disk', 'pass', `${on}: ${stats}; kubelet's image GC starts at ${f.high.value}%`);
}

// ── imds ──────────────────────────────────────────────────────────────────────────────────────

export type ImdsFacts =
  | { disabled: true }
  | { disabled: false; endpoint: string; error: ErrorFacts }
  | {
      disabled: false;
      endpoint: string;
      region: string;
      instanceId: string;
      role?: string;
      roleError?: ErrorFacts;
    };

export function imdsCheck(f: ImdsFacts): CheckResult {
  if (f.disabled) return result('imds', 'skip', 'skip: IMDS is disabled (AWS_EC2_METADATA_DISABLED=true)');
  if ('error' in f) return result('imds', 'fail', f.error.message, f.error.hint);
  const base = `IMDSv2 at ${f.endpoint}: token PUT answered (the hop limit is enough from here), region ${f.region}, instance ${f.instanceId}`;
  if (!f.role)
    return result(
      'imds',
      'warn',
      `${base}; ${f.roleError?.message ?? 'no instance profile role'}`,
      f.roleError?.hint ?? 'attach an instance profile to the instance',
    );
  return result('imds', 'pass', `${base}, instance profile role ${f.role}`);
}

// ── ecr ───────────────────────────────────────────────────────────────────────────────────────

export type EcrFacts =
  | { skip: string }
  | { account: string; region: string; expiresAt: Date }
  | { account: string; region: string; error: ErrorFacts };

export function ecrCheck(f: EcrFacts): CheckResult {
  if ('skip' in f) return result('ecr', 'skip', `skip: ${f.skip}`);
  if ('error' in f)
    return result(
      'ecr',
      f.error.code === 'ECR_THROTTLED' ? 'warn' : 'fail',
      `GetAuthorizationToken for registry ${f.account} (${f.region}): ${f.error.code}: ${f.error.message}`,
      f.error.hint,
    );
  return result(
    'ecr',
    'pass',
    `GetAuthorizationToken for registry ${f.account} (${f.region}): a token valid until ${f.expiresAt.toISOString()} (not shown)`,
  );
}

// ── proxy ─────────────────────────────────────────────────────────────────────────────────────

export interface ProxyFacts {
  /** node-bootstrap's own proxy settings (process environment, then NodeConfig). */
  settings: ProxySettings;
  verdict: NoProxyVerdict;
  /** NodeConfig that does not parse (part and key named), proxy URLs that are not URLs. */
  problems: string[];
  /** Where NodeConfig came from, for the message. */
  nodeConfigFrom: string;
  /** containerd's unit environment (it pulls images itself, through its own proxy variables). */
  containerd: { unit: string; found: boolean; settings: ProxySettings };
}

const proxyText = (s: ProxySettings): string =>
  [s.https, s.http]
    .filter((v) => v !== undefined)
    .map((v) => `${v.variable}=${redactProxy(v.value)} (${v.source})`)
    .join(', ');

export function proxyCheck(f: ProxyFacts): CheckResult {
  const warns: { msg: string; fix: string }[] = f.problems.map((p) => ({
    msg: p,
    fix: 'fix the named part and key of the NodeConfig (or the proxy variable)',
  }));
  const nodeProxied = hasProxy(f.settings);
  const c = f.containerd;
  if (!nodeProxied) {
    const also = hasProxy(c.settings)
      ? `; containerd has its own proxy (${proxyText(c.settings)}) for pulls`
      : '';
    if (warns.length > 0) return result('proxy', 'warn', warns.map((w) => w.msg).join('; '), warns[0]!.fix);
    return result(
      'proxy',
      'pass',
      `no proxy for node-bootstrap: the ECR API is reached directly (NodeConfig: ${f.nodeConfigFrom})${also}`,
    );
  }
  const v = f.verdict;
  if (v.missing.length > 0) {
    const from = f.settings.noProxy
      ? `${f.settings.noProxy.variable} from ${f.settings.noProxy.source}`
      : 'NO_PROXY is unset';
    warns.push({
      msg: `NO_PROXY does not cover ${v.missing.map((m) => `${m.entry} (${m.why})`).join(', ')} [${from}]`,
      fix: `set ${v.line} wherever the proxy is set (the unit's EnvironmentFile=, or NodeConfig spec.instance.environment.default)`,
    });
  }
  if (c.found && !hasProxy(c.settings)) {
    const https = f.settings.https ?? f.settings.http;
    warns.push({
      msg: `the node uses a proxy but ${c.unit} has none in its unit environment: containerd pulls images itself and will try to reach the registry directly`,
      fix: `add /etc/systemd/system/${c.unit}.d/http-proxy.conf with [Service] Environment="HTTPS_PROXY=${https ? redactProxy(https.value) : '…'}" "NO_PROXY=${v.line ? v.line.slice('NO_PROXY='.length) : (f.settings.noProxy?.value ?? '')}" (or NodeConfig spec.instance.environment.containerd), then systemctl daemon-reload and restart containerd; or give the subnet the ecr.dkr and S3 gateway VPC endpoints`,
    });
  }
  if (warns.length > 0)
    return result('proxy', 'warn', warns.map((w) => w.msg).join('; '), warns.map((w) => w.fix).join('; '));
  const advice = v.recommended.length
    ? `; consider also ${v.recommended.map((r) => r.entry).join(', ')} in NO_PROXY`
    : '';
  return result(
    'proxy',
    'pass',
    `${proxyText(f.settings)}; NO_PROXY covers IMDS, localhost and the cluster endpoint; ${c.unit}: ${c.found ? proxyText(c.settings) : 'not installed'}${advice}`,
  );
}

// ── the report ────────────────────────────────────────────────────────────────────────────────

export interface CheckReport {
  ok: boolean;
  checks: CheckResult[];
}

export function report(checks: CheckResult[]): CheckReport {
  return { ok: !checks.some((c) => c.status === 'fail'), checks };
}

/** 0 nothing failed, 1 a check failed, 2 the config is invalid (a usage/config error). */
export function exitCode(r: CheckReport): 0 | 1 | 2 {
  if (r.checks.some((c) => c.id === 'config' && c.status === 'fail')) return 2;
  return r.ok ? 0 : 1;
}

const LABEL: Record<CheckStatus, string> = { pass: 'pass', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

export function formatReport(r: CheckReport, title: string): string {
  const w = Math.max(...r.checks.map((c) => c.id.length));
  const lines: string[] = [];
  for (const c of r.checks) {
    lines.push(`${c.id.padEnd(w)}  ${LABEL[c.status]}  ${c.message}`);
    if (c.fix && c.status !== 'pass' && c.status !== 'skip') lines.push(`${' '.repeat(w + 8)}fix: ${c.fix}`);
  }
  const count = (s: CheckStatus) => r.checks.filter((c) => c.status === s).length;
  const parts = [
    `${count('fail')} failed`,
    `${count('warn')} warning${count('warn') === 1 ? '' : 's'}`,
    `${count('pass')} passed`,
    `${count('skip')} skipped`,
  ];
  lines.push('', `${title}: ${r.ok ? 'OK' : 'FAILED'} (${parts.join(', ')})`);
  return lines.join('\n');
}

/** What `check` found of the startup cache `install` makes (payload.ts, commands/startup-cache.ts). */
export interface StartupCacheFacts {
  /** This build's folder, as a boot would read it (under the root). */
  dir: string;
  /** This node's V8 (the one whose code caches count). */
  v8: string;
  /** Per part; undefined when check does not run from the bundle (nothing to compare with). */
  parts?: {
    name: string;
    source: 'same' | 'missing' | 'different';
    cache: 'accepted' | 'rejected' | 'missing';
  }[];
}

export function startupCacheCheck(f: StartupCacheFacts): CheckResult {
  if (!f.parts) return result('startup-cache', 'skip', 'not running from the bundle: no parts to compare');
  const fix = `run \`node-bootstrap install\` in the image build, with the node the node boots with: it writes ${f.dir}`;
  if (f.parts.every((p) => p.source === 'missing'))
    return result(
      'startup-cache',
      'warn',
      `none for this build in ${f.dir}: a boot compiles node-bootstrap's code (a slower start, nothing else)`,
      fix,
    );
  const problems = f.parts.flatMap((p) => [
    ...(p.source === 'same'
      ? []
      : [`${p.name}: source ${p.source === 'missing' ? 'missing' : 'from another build'}`]),
    ...(p.cache === 'accepted'
      ? []
      : [`${p.name}: ${p.cache === 'missing' ? 'no' : 'a refused'} code cache for V8 ${f.v8}`]),
  ]);
  if (problems.length === 0)
    return result('startup-cache', 'pass', `${f.parts.length} parts with V8 ${f.v8} code caches in ${f.dir}`);
  return result(
    'startup-cache',
    'warn',
    `${problems.join('; ')}: a boot compiles node-bootstrap's code (a slower start, nothing else)`,
    fix,
  );
}
