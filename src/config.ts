/**
 * Configuration: /etc/node-bootstrap/config.yaml, then config.d/*.yaml merged in name order.
 * Checked once, here, at the edge. Only this module and env.ts read the environment.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseDocument } from 'yaml';
import * as z from 'zod/mini';
import { type Env, readEnv } from './env.js';
import { BootError } from './errors.js';
import { PHASE_NAMES, type PhaseName } from './runner/phase.js';

export const DEFAULT_CONFIG_FILE = '/etc/node-bootstrap/config.yaml';
/** The unit's LogsDirectory=; what the EKS log collector gathers from /var/log. */
export const DEFAULT_LOG_DIR = '/var/log/node-bootstrap';
/** node_exporter has no default; this is the directory most of its deployments pass it. */
export const DEFAULT_TEXTFILE_DIR = '/var/lib/node_exporter/textfile_collector';
export { DEFAULT_STATE_DIR } from './env.js';

// zod/mini: the same checks without a dozen methods on every schema object (less to build and keep
// at every start); it leaves the English messages for the caller to load.
z.config(z.locales.en());

/** "90s", "2m", "500ms", "1h" or a number of seconds. */
const durationRe = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
export function parseDuration(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? Math.round(v * 1000) : undefined;
  const m = durationRe.exec(v.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2] ?? 's']!;
  return ms > 0 ? Math.round(ms) : undefined;
}

const duration = z.union([z.number(), z.string()]).check(
  z.refine((v) => parseDuration(v) !== undefined, {
    message: 'expected a positive duration such as 90s, 2m, 500ms, or a number of seconds',
  }),
);

/** kubelet.resolvConfPolicy: what the resolv-conf phase does with a file that would break pods. */
export const RESOLV_CONF_POLICIES = ['fail', 'warn', 'repair'] as const;
export type ResolvConfPolicy = (typeof RESOLV_CONF_POLICIES)[number];

/** sandboxImage.source: where the sandbox image may come from (see the README's sandbox image flow). */
export const SANDBOX_SOURCES = ['auto', 'archive', 'registry'] as const;
export type SandboxSource = (typeof SANDBOX_SOURCES)[number];

/** containerd's rendered config, where the sandbox reference, root and socket are read. */
export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';

const absPath = z.string().check(z.startsWith('/', { message: 'expected an absolute path' }));
/** A directory node-bootstrap writes into, or false for "do not write". */
const dirOrOff = z.pipe(
  z.union([z.string(), z.boolean()]).check(
    z.refine((v) => v === false || (typeof v === 'string' && v.startsWith('/')), {
      message: 'expected an absolute path or false',
    }),
  ),
  z.transform((v) => v as string | false),
);
const unitName = z.string().check(
  z.regex(/^[A-Za-z0-9:_.\\@-]+\.(service|socket|target)$/, {
    message: 'expected a systemd unit name such as containerd.service',
  }),
);
const imageRef = z.string().check(
  z.regex(/^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\.[a-z0-9-]+)*\/[^\s]+$|^[^\s/]+\/[^\s]+$/, {
    message: 'expected a full image reference such as registry.example.com/eks/pause:3.10',
  }),
);
const region = z
  .string()
  .check(z.regex(/^[a-z]{2,5}(-[a-z]+)+-\d+$/, { message: 'expected an AWS region such as eu-west-1' }));
const positive = z.number().check(z.positive());
const percent = z.number().check(z.gte(0), z.lte(100));
const off = z.union([z.literal(0), z.literal('0'), duration]);
const opt = z.optional;

/** Every key is optional in a file; defaults are applied after the merge. Unknown keys are errors. */
const FileSchema = z.strictObject({
  region: opt(region),
  containerd: opt(
    z.strictObject({
      socket: opt(absPath),
      config: opt(absPath),
      namespace: opt(z.string().check(z.minLength(1))),
      unit: opt(unitName),
    }),
  ),
  sandboxImage: opt(
    z.strictObject({
      tag: opt(
        z.string().check(z.regex(/^[\w][\w.-]{0,127}$/, { message: 'expected an image tag such as 3.10' })),
      ),
      image: opt(imageRef),
      fips: opt(z.boolean()),
      dualstack: opt(z.boolean()),
      fallbacks: opt(z.array(imageRef)),
      archive: opt(absPath),
      source: opt(z.enum(SANDBOX_SOURCES)),
    }),
  ),
  kubelet: opt(
    z.strictObject({
      unit: opt(unitName),
      resolvConf: opt(absPath),
      config: opt(absPath),
      resolvConfPolicy: opt(z.enum(RESOLV_CONF_POLICIES)),
    }),
  ),
  prefetch: opt(
    z.strictObject({
      images: opt(
        z.array(
          z.union([
            imageRef,
            z.strictObject({ image: imageRef, priority: opt(z.int()), sizeMB: opt(positive) }),
          ]),
        ),
      ),
      budgetMBps: opt(positive),
      maxConcurrent: opt(z.int().check(z.positive())),
      registryQps: opt(positive),
      pressure: opt(z.strictObject({ some: opt(percent), full: opt(percent), window: opt(off) })),
      jitter: opt(off),
      maxWait: opt(duration),
      drain: opt(z.boolean()),
      timeout: opt(duration),
    }),
  ),
  report: opt(
    z.strictObject({
      logDir: opt(dirOrOff),
      history: opt(z.int().check(z.gte(0), z.lte(100))),
    }),
  ),
  metrics: opt(z.strictObject({ textfileDir: opt(dirOrOff) })),
  timeouts: opt(
    z.strictObject({
      ...(Object.fromEntries(PHASE_NAMES.map((p) => [p, opt(duration)])) as Record<
        PhaseName,
        z.ZodMiniOptional<typeof duration>
      >),
      run: opt(duration),
    }),
  ),
  nodeConfig: opt(z.strictObject({ file: opt(absPath), imds: opt(z.boolean()) })),
});
type FileConfig = z.infer<typeof FileSchema>;

export interface Config {
  /** Files read, in merge order (for the report and error messages). */
  sources: string[];
  region?: string;
  containerd: {
    socket: string;
    /** True when config.yaml set containerd.socket; else the rendered config's [grpc] address may apply. */
    socketSet: boolean;
    /** containerd's config.toml (its imports are followed). */
    config: string;
    namespace: string;
    unit: string;
  };
  sandboxImage: {
    tag: string;
    image?: string;
    fips: boolean;
    dualstack: boolean;
    fallbacks: string[];
    /** Unset: /etc/eks/pause.tar when containerd names localhost/kubernetes/pause, else /etc/node-bootstrap/pause.tar. */
    archive?: string;
    source: SandboxSource;
  };
  kubelet: { unit: string; resolvConf?: string; config?: string; resolvConfPolicy: ResolvConfPolicy };
  prefetch: PrefetchConfig;
  /** Copies of the timeline for log collectors: written only where the directory exists. */
  report: { logDir: string | false; history: number };
  /** node_exporter textfile metrics: written only where the directory exists. */
  metrics: { textfileDir: string | false };
  timeouts: Record<PhaseName, number>;
  /**
   * Where the node's NodeConfig (node.eks.aws/v1alpha1) is read from: `file` (user data saved on
   * disk: MIME multipart or YAML), else IMDS user data when `imds` is true and IMDS is not disabled.
   */
  nodeConfig: { file?: string; imds: boolean };
  /** Deadline of the whole `run` (every phase's own deadline is cut to what is left of it). */
  runTimeoutMs: number;
  /** The parts of the environment node-bootstrap itself reads (the AWS SDK reads its own). */
  env: Env;
}

export interface PrefetchImage {
  image: string;
  /** Higher first (default 0). */
  priority: number;
  /** Size hint for admission; else estimated, then measured through CRI. */
  sizeMB?: number;
}

export interface PrefetchConfig {
  images: PrefetchImage[];
  budgetMBps: number;
  maxConcurrent: number;
  registryQps: number;
  pressure: { some: number; full: number };
  /** Window of the short-term pressure and volume write rate (0: PSI avg10, no write-rate check). */
  windowMs: number;
  /** Start spread window (0: none). */
  jitterMs: number;
  /** With nothing in flight, a pull starts after waiting this long whatever the pressure. */
  maxWaitMs: number;
  /** With nothing in flight, wait for the volume's write backlog to drain before the next pull. */
  drain: boolean;
  /** Deadline of the whole prefetch command. */
  timeoutMs: number;
}

/**
 * Per-phase deadlines. Their sum (9 min 10 s) fits inside the run's (timeouts.run, 11 min): a run
 * whose every phase goes to its deadline still ends with its own verdict and status.json.
 */
export const DEFAULT_TIMEOUTS: Record<PhaseName, number> = {
  'containerd-unit': 120_000,
  'containerd-socket': 60_000,
  cri: 60_000,
  'sandbox-image': 240_000,
  'resolv-conf': 10_000,
  kubelet: 60_000,
};

/**
 * 11 min: Karpenter and managed node groups give a node up 15 min after launch, and the instance
 * spends some of that before node-bootstrap starts (firmware, kernel, cloud-init). It is under the
 * unit's TimeoutStartSec=12min, so the run ends on its own verdict (RUN_TIMEOUT, status.json
 * written) before systemd kills it.
 */
export const DEFAULT_RUN_TIMEOUT_MS = 660_000;

function describe(file: string, issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String).join('.') || '(top level)';
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.join(', ');
    return `${file}: ${path === '(top level)' ? '' : `${path}: `}unknown key(s) ${keys}; allowed keys are listed in the README's configuration reference`;
  }
  return `${file}: ${path}: ${issue.message}`;
}

function readFile(file: string, required: boolean): FileConfig | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return undefined;
    throw new BootError('CONFIG_UNREADABLE', `${file}: cannot read (${code ?? String(err)})`);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : 'here';
    throw new BootError(
      'CONFIG_INVALID',
      `${file}: YAML syntax error at ${where}: ${e.message.split('\n')[0]}`,
      {
        hint: `fix the YAML syntax in ${file}`,
      },
    );
  }
  const data = doc.toJS() ?? {};
  const parsed = FileSchema.safeParse(data);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => describe(file, i));
    throw new BootError('CONFIG_INVALID', lines.join('; '), { hint: `fix ${lines[0]}` });
  }
  return parsed.data;
}

/** Drop-ins next to the main file, in name order (the systemd drop-in convention). */
function dropIns(mainFile: string): string[] {
  const dir = join(dirname(mainFile), 'config.d');
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
      .sort()
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

function merge<T>(base: T, over: unknown): T {
  if (over === undefined) return base;
  if (
    base === null ||
    typeof base !== 'object' ||
    Array.isArray(base) ||
    typeof over !== 'object' ||
    over === null
  )
    return over as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) out[k] = merge(out[k], v);
  return out as T;
}

export interface LoadOptions {
  /** --config: this file must exist. Default: /etc/node-bootstrap/config.yaml, optional. */
  file?: string;
  env?: NodeJS.ProcessEnv;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const main = opts.file ?? DEFAULT_CONFIG_FILE;
  const files = [main, ...dropIns(main)];
  let merged: FileConfig = {};
  const sources: string[] = [];
  files.forEach((f, i) => {
    const c = readFile(f, i === 0 && opts.file !== undefined);
    if (c) {
      merged = merge(merged, c);
      sources.push(f);
    }
  });
  const timeouts = { ...DEFAULT_TIMEOUTS };
  for (const p of PHASE_NAMES) {
    const v = merged.timeouts?.[p];
    if (v !== undefined) timeouts[p] = parseDuration(v)!;
  }
  const runTimeout = merged.timeouts?.run;
  return {
    sources,
    region: merged.region,
    containerd: {
      socket: merged.containerd?.socket ?? '/run/containerd/containerd.sock',
      socketSet: merged.containerd?.socket !== undefined,
      config: merged.containerd?.config ?? DEFAULT_CONTAINERD_CONFIG,
      namespace: merged.containerd?.namespace ?? 'k8s.io',
      unit: merged.containerd?.unit ?? 'containerd.service',
    },
    sandboxImage: {
      tag: merged.sandboxImage?.tag ?? '3.10',
      image: merged.sandboxImage?.image,
      fips: merged.sandboxImage?.fips ?? false,
      dualstack: merged.sandboxImage?.dualstack ?? false,
      fallbacks: merged.sandboxImage?.fallbacks ?? [],
      archive: merged.sandboxImage?.archive,
      source: merged.sandboxImage?.source ?? 'auto',
    },
    kubelet: {
      unit: merged.kubelet?.unit ?? 'kubelet.service',
      resolvConf: merged.kubelet?.resolvConf,
      config: merged.kubelet?.config,
      resolvConfPolicy: merged.kubelet?.resolvConfPolicy ?? 'fail',
    },
    prefetch: prefetchConfig(merged.prefetch),
    report: {
      logDir: merged.report?.logDir ?? DEFAULT_LOG_DIR,
      history: merged.report?.history ?? 5,
    },
    metrics: { textfileDir: merged.metrics?.textfileDir ?? DEFAULT_TEXTFILE_DIR },
    timeouts,
    nodeConfig: { file: merged.nodeConfig?.file, imds: merged.nodeConfig?.imds ?? true },
    runTimeoutMs: runTimeout === undefined ? DEFAULT_RUN_TIMEOUT_MS : parseDuration(runTimeout)!,
    env: readEnv(env),
  };
}

function prefetchConfig(p: FileConfig['prefetch']): PrefetchConfig {
  const ms = (v: string | number | undefined, dflt: number): number =>
    v === undefined ? dflt : v === 0 || v === '0' ? 0 : parseDuration(v)!;
  return {
    images: (p?.images ?? []).map((i) =>
      typeof i === 'string' ? { image: i, priority: 0 } : { ...i, priority: i.priority ?? 0 },
    ),
    budgetMBps: p?.budgetMBps ?? 125,
    maxConcurrent: p?.maxConcurrent ?? 2,
    registryQps: p?.registryQps ?? 5,
    pressure: { some: p?.pressure?.some ?? 20, full: p?.pressure?.full ?? 5 },
    windowMs: ms(p?.pressure?.window, 1_000),
    jitterMs: ms(p?.jitter, 30_000),
    maxWaitMs: ms(p?.maxWait, 30_000),
    drain: p?.drain ?? true,
    timeoutMs: ms(p?.timeout, 1_800_000),
  };
}
