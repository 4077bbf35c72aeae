/**
 * Which resolv.conf kubelet will hand to pods, and its image GC thresholds: found the way kubelet
 * finds them, from its unit (ExecStart= with Environment=/EnvironmentFile=), its flags, its config
 * file and the config drop-ins. Pure over a FileReader snapshot; every answer says where it came from.
 *
 * kubelet's precedence: command-line flags over --config-dir drop-ins over the --config file over
 * built-in defaults. node-bootstrap's own `kubelet.resolvConf` overrides all of them (the operator
 * said which file to check).
 */
import { parse } from 'yaml';
import { BootError } from '../errors.js';
import { describeReadError, type FileReader } from './file-reader.js';
import { type Arg, execStart, loadUnit, unitEnvironment } from './unit-files.js';

/** Where kubelet's flags live when its unit cannot be read (EKS AMIs: AL2023 nodeadm, AL2 bootstrap.sh). */
export const KUBELET_ENV_FILE = '/etc/eks/kubelet/environment';
const ENV_FILE_VARS = ['NODEADM_KUBELET_ARGS', 'KUBELET_ARGS', 'KUBELET_EXTRA_ARGS'] as const;
/** kubelet config files of the EKS AMIs (AL2023 nodeadm, then AL2). */
export const KUBELET_CONFIG_FILES = [
  '/etc/kubernetes/kubelet/config.json',
  '/etc/kubernetes/kubelet/kubelet-config.json',
] as const;
export const DEFAULT_RESOLV_CONF = '/etc/resolv.conf';
/** kubelet's defaults (KubeletConfiguration v1beta1). */
export const DEFAULT_IMAGE_GC = { high: 85, low: 80 } as const;
/** node-bootstrap's own drop-in (repair); left out when reading what the operator configured. */
export const REPAIR_DROP_IN = '20-node-bootstrap-resolv.conf';

export type Source =
  | { kind: 'node-bootstrap'; where: string }
  | { kind: 'cli'; where: string }
  | { kind: 'flag'; where: string }
  | { kind: 'kubelet-config'; where: string }
  | { kind: 'default'; where: string };

export interface Setting<T> {
  value: T;
  source: Source;
}

export interface KubeletSettings {
  /** '' when kubelet is told to use no file at all (`--resolv-conf=""`): pods with dnsPolicy Default get 127.0.0.1. */
  resolvConf: Setting<string>;
  /** Known when kubelet's config or flags set it; kubelet adds 3 cluster search domains when it is non-empty. */
  clusterDomain?: Setting<string>;
  imageGCHigh: Setting<number>;
  imageGCLow: Setting<number>;
  /** The unit file that defines kubelet, when found. */
  unitFile?: string;
  /** kubelet's argv (without the binary), with each argument's origin; undefined when not discoverable. */
  args?: Arg[];
  /** Variables ExecStart= expands, in order (where a repair can add a flag). */
  execVars: string[];
  configFile?: string;
  configDropIns: string[];
  /** How the discovery went, for messages: "kubelet.service not found: flags from …". */
  notes: string[];
}

export interface DiscoverOptions {
  /** node-bootstrap config `kubelet.resolvConf`. */
  resolvConf?: string;
  /** node-bootstrap config `kubelet.config`: kubelet's config file. */
  kubeletConfig?: string;
  /** Default kubelet.service. */
  unit?: string;
}

interface KubeletFileConfig {
  resolvConf?: string;
  clusterDomain?: string;
  imageGCHighThresholdPercent?: number;
  imageGCLowThresholdPercent?: number;
}

/** `--name=value` or `--name value`; the last occurrence wins (pflag). Arguments after `--` are not flags. */
export function lastFlag(args: readonly Arg[], name: string): Arg | undefined {
  let found: Arg | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!.value;
    if (a === '--') break;
    if (a === `--${name}`) {
      const next = args[i + 1];
      found = { value: next?.value ?? '', origin: args[i]!.origin };
      i++;
    } else if (a.startsWith(`--${name}=`)) {
      found = { value: a.slice(name.length + 3), origin: args[i]!.origin };
    }
  }
  return found;
}

/** A kubelet config file or drop-in (JSON or YAML). Throws KUBELET_CONFIG_INVALID naming the file. */
export function parseKubeletConfig(text: string, file: string): KubeletFileConfig {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new BootError(
      'KUBELET_CONFIG_INVALID',
      `${file}: not valid JSON or YAML: ${(err as Error).message.split('\n')[0]}`,
      { hint: `fix the syntax of ${file}; kubelet will not start with it either` },
    );
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new BootError('KUBELET_CONFIG_INVALID', `${file}: expected a KubeletConfiguration object`, {
      hint: `fix ${file}; kubelet will not start with it either`,
    });
  const o = doc as Record<string, unknown>;
  const out: KubeletFileConfig = {};
  const str = (k: 'resolvConf' | 'clusterDomain') => {
    if (o[k] === undefined) return;
    if (typeof o[k] !== 'string')
      throw new BootError('KUBELET_CONFIG_INVALID', `${file}: ${k}: expected a string`, {
        hint: `fix ${k} in ${file}`,
      });
    out[k] = o[k] as string;
  };
  const pct = (k: 'imageGCHighThresholdPercent' | 'imageGCLowThresholdPercent') => {
    if (o[k] === undefined) return;
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 100)
      throw new BootError('KUBELET_CONFIG_INVALID', `${file}: ${k}: expected an integer from 0 to 100`, {
        hint: `fix ${k} in ${file}`,
      });
    out[k] = v;
  };
  str('resolvConf');
  str('clusterDomain');
  pct('imageGCHighThresholdPercent');
  pct('imageGCLowThresholdPercent');
  return out;
}

function readConfig(reader: FileReader, file: string, required: boolean): KubeletFileConfig | undefined {
  const c = reader.read(file);
  if (c.ok) return parseKubeletConfig(c.text, file);
  if (!required && c.code === 'ENOENT') return undefined;
  throw new BootError(
    'KUBELET_CONFIG_INVALID',
    `kubelet's config file ${file} ${describeReadError(c.code)}`,
    {
      hint: `kubelet will not start without it: create ${file}, or fix --config / kubelet.config`,
    },
  );
}

/** kubelet's flags: from its unit when it can be read, else from the EKS environment file. */
function kubeletArgs(
  reader: FileReader,
  unitName: string,
  notes: string[],
): { args?: Arg[]; unitFile?: string; vars: string[]; complete: boolean } {
  const unit = loadUnit(reader, unitName, { ignoreDropIns: [REPAIR_DROP_IN] });
  if (unit.file && !unit.masked) {
    const env = unitEnvironment(reader, unit);
    const exec = execStart(unit, env.vars);
    if (exec) {
      // A variable with no value yet (its environment file is written at boot, e.g. by nodeadm):
      // kubelet's flags are only partly known.
      const unset = exec.vars.filter((v) => !env.vars.has(v));
      if (unset.length > 0)
        notes.push(
          `${unit.file}: ${unset.map((v) => `$${v}`).join(', ')} not set (yet): kubelet's flags are partly unknown`,
        );
      return { args: exec.argv.slice(1), unitFile: unit.file, vars: exec.vars, complete: unset.length === 0 };
    }
    notes.push(`${unit.file} has no ExecStart=`);
  } else notes.push(`${unitName} ${unit.masked ? 'is masked' : 'is not installed'}`);
  const c = reader.read(KUBELET_ENV_FILE);
  if (!c.ok) {
    notes.push(`no ${KUBELET_ENV_FILE}: kubelet's flags are unknown`);
    return { vars: [], complete: false };
  }
  notes.push(`flags read from ${KUBELET_ENV_FILE}`);
  const args: Arg[] = [];
  const text = c.text;
  for (const name of ENV_FILE_VARS) {
    const m = new RegExp(`^\\s*${name}\\s*=\\s*(.*)$`, 'm').exec(text);
    if (!m) continue;
    let v = m[1]!.trim();
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1);
    for (const part of v.split(/\s+/).filter(Boolean))
      args.push({ value: part, origin: `$${name} (${KUBELET_ENV_FILE})` });
  }
  return { args, vars: [], complete: false };
}

export function discoverKubelet(reader: FileReader, opts: DiscoverOptions = {}): KubeletSettings {
  const notes: string[] = [];
  const { args, unitFile, vars, complete } = kubeletArgs(reader, opts.unit ?? 'kubelet.service', notes);
  const flag = (name: string) => (args ? lastFlag(args, name) : undefined);

  // kubelet's config file: node-bootstrap's kubelet.config, else --config, else the EKS defaults.
  let configFile: string | undefined;
  let required = false;
  const configFlag = flag('config');
  if (opts.kubeletConfig) {
    configFile = opts.kubeletConfig;
    required = true;
  } else if (configFlag?.value) {
    configFile = configFlag.value;
    required = true;
  } else if (!complete) {
    configFile = KUBELET_CONFIG_FILES.find((f) => reader.exists(f));
    if (!configFile) notes.push(`no kubelet config file (${KUBELET_CONFIG_FILES.join(', ')})`);
  }
  const layers: { file: string; cfg: KubeletFileConfig }[] = [];
  if (configFile) {
    const cfg = readConfig(reader, configFile, required);
    if (cfg) layers.push({ file: configFile, cfg });
    else notes.push(`${configFile} does not exist`);
  }
  // Drop-ins: --config-dir; when kubelet's flags are unknown, `<config>.d` if it exists (nodeadm's layout).
  const dirFlag = flag('config-dir');
  const configDir = dirFlag?.value || (!complete && configFile ? `${configFile}.d` : undefined);
  const configDropIns: string[] = [];
  if (configDir)
    for (const f of (reader.list(configDir) ?? []).filter((n) => n.endsWith('.conf')).sort()) {
      const file = `${configDir}/${f}`;
      const cfg = readConfig(reader, file, true)!;
      layers.push({ file, cfg });
      configDropIns.push(file);
    }
  const fromConfig = <K extends keyof KubeletFileConfig>(k: K) => {
    for (const l of [...layers].reverse())
      if (l.cfg[k] !== undefined)
        return { value: l.cfg[k] as NonNullable<KubeletFileConfig[K]>, where: `${k} in ${l.file}` };
    return undefined;
  };

  const pick = <T>(
    flagName: string,
    key: keyof KubeletFileConfig,
    parseFlag: (v: string) => T | undefined,
  ): Setting<T> | undefined => {
    const f = flag(flagName);
    const fv = f ? parseFlag(f.value) : undefined;
    if (f && fv !== undefined)
      return { value: fv, source: { kind: 'flag', where: `--${flagName} in ${f.origin}` } };
    const c = fromConfig(key);
    if (c) return { value: c.value as T, source: { kind: 'kubelet-config', where: c.where } };
    return undefined;
  };
  const pct = (v: string) => {
    const n = Number(v);
    return Number.isInteger(n) && n >= 0 && n <= 100 ? n : undefined;
  };

  const resolvConf: Setting<string> = opts.resolvConf
    ? {
        value: opts.resolvConf,
        source: { kind: 'node-bootstrap', where: 'kubelet.resolvConf in node-bootstrap config' },
      }
    : (pick('resolv-conf', 'resolvConf', (v) => v) ?? {
        value: DEFAULT_RESOLV_CONF,
        source: {
          kind: 'default',
          where: "kubelet's default: no --resolv-conf, no resolvConf in its config",
        },
      });
  const clusterDomain = pick('cluster-domain', 'clusterDomain', (v) => v);
  const imageGCHigh = pick('image-gc-high-threshold', 'imageGCHighThresholdPercent', pct) ?? {
    value: DEFAULT_IMAGE_GC.high,
    source: { kind: 'default', where: "kubelet's default imageGCHighThresholdPercent" },
  };
  const imageGCLow = pick('image-gc-low-threshold', 'imageGCLowThresholdPercent', pct) ?? {
    value: DEFAULT_IMAGE_GC.low,
    source: { kind: 'default', where: "kubelet's default imageGCLowThresholdPercent" },
  };
  return {
    resolvConf,
    ...(clusterDomain ? { clusterDomain } : {}),
    imageGCHigh,
    imageGCLow,
    ...(unitFile ? { unitFile } : {}),
    ...(args ? { args } : {}),
    execVars: vars,
    ...(configFile ? { configFile } : {}),
    configDropIns,
    notes,
  };
}
