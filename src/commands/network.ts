/**
 * The node's network settings for node-bootstrap's own AWS calls, gathered once: the proxy variables
 * of the process (the unit's Environment=/EnvironmentFile=), then NodeConfig's
 * `spec.instance.environment` (user data from `nodeConfig.file` or IMDS), the NO_PROXY verdict, and
 * what containerd's unit environment says (containerd pulls images itself, with its own proxy).
 * IMDS is always reached directly; reading NodeConfig never fails a run (nodeadm owns it).
 */
import { readFileSync } from 'node:fs';
import type { Imds } from '../adapters/imds.js';
import type { Config } from '../config.js';
import type { FileReader } from '../core/file-reader.js';
import { environmentFor, type NodeConfigFacts, parseUserData } from '../core/nodeconfig.js';
import {
  type EnvSource,
  hasProxy,
  type NoProxyVerdict,
  noProxyVerdict,
  type ProxySettings,
  proxySettings,
  proxyUrl,
  redactProxy,
} from '../core/proxy.js';
import { loadUnit, parseUnitFile, splitWords, unitEnvironment } from '../core/unit-files.js';
import type { Phase } from '../runner/phase.js';

export const PROCESS_ENV_SOURCE = 'the process environment (unit Environment=/EnvironmentFile=)';

export interface NetworkFacts {
  settings: ProxySettings;
  nodeConfig?: NodeConfigFacts;
  /** Where NodeConfig was looked for and what was found, for messages. */
  nodeConfigFrom: string;
  /** NodeConfig that could not be read or parsed (named part and key), bad proxy URLs. */
  problems: string[];
  verdict: NoProxyVerdict;
}

async function readNodeConfig(
  cfg: Config,
  imds: Pick<Imds, 'userData'> | undefined,
  signal: AbortSignal,
): Promise<{ facts?: NodeConfigFacts; from: string; problems: string[] }> {
  let data: Uint8Array | undefined;
  let where: string;
  if (cfg.nodeConfig.file) {
    where = cfg.nodeConfig.file;
    try {
      data = readFileSync(cfg.nodeConfig.file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      return { from: where, problems: [`nodeConfig.file ${where}: cannot read (${code})`] };
    }
  } else if (cfg.nodeConfig.imds && !cfg.env.imdsDisabled && imds) {
    where = 'IMDS /latest/user-data';
    try {
      data = await imds.userData(signal);
    } catch (err) {
      // Off EC2, or IMDS not answering: NodeConfig is optional input, the process environment stands.
      return { from: `${where} (not read: ${(err as Error).message})`, problems: [] };
    }
    if (!data) return { from: `${where} (none)`, problems: [] };
  } else return { from: 'not read (nodeConfig.imds is false, or IMDS is disabled)', problems: [] };
  const r = await parseUserData(data, where);
  return {
    ...(r.nodeConfig ? { facts: r.nodeConfig } : {}),
    from: r.nodeConfig ? `${where} (${r.kind})` : `${where} (${r.kind}, no NodeConfig)`,
    problems: r.errors,
  };
}

export async function readNetwork(
  cfg: Config,
  imds: Pick<Imds, 'userData'> | undefined,
  signal: AbortSignal,
): Promise<NetworkFacts> {
  const nc = await readNodeConfig(cfg, imds, signal);
  const sources: EnvSource[] = [{ source: PROCESS_ENV_SOURCE, vars: cfg.env.proxy }];
  if (nc.facts) {
    const keys = ['default', 'node-bootstrap'].filter((k) => nc.facts!.environment[k]);
    sources.push({
      source: `NodeConfig spec.instance.environment.${keys.join('/') || 'default'} (${nc.from})`,
      vars: environmentFor(nc.facts, 'node-bootstrap'),
    });
  }
  const settings = proxySettings(sources);
  const problems = [...nc.problems];
  for (const v of [settings.https, settings.http])
    if (v && !proxyUrl(v.value))
      problems.push(
        `${v.variable} from ${v.source} is not an http:// or https:// proxy URL (${redactProxy(v.value)}): ignored`,
      );
  for (const k of ['https', 'http'] as const)
    if (settings[k] && !proxyUrl(settings[k].value)) delete settings[k];
  return {
    settings,
    ...(nc.facts ? { nodeConfig: nc.facts } : {}),
    nodeConfigFrom: nc.from,
    problems,
    verdict: noProxyVerdict({
      settings,
      ...(nc.facts?.apiServerEndpoint ? { clusterEndpoint: nc.facts.apiServerEndpoint } : {}),
    }),
  };
}

/** Warnings for the run's timeline: NodeConfig problems and what NO_PROXY misses. */
export function networkWarnings(n: NetworkFacts): string[] {
  const out = n.problems.map((p) => `NodeConfig/proxy: ${p}`);
  if (n.verdict.missing.length > 0) {
    const via = n.settings.noProxy
      ? `NO_PROXY (${n.settings.noProxy.variable} from ${n.settings.noProxy.source})`
      : 'NO_PROXY (unset)';
    out.push(
      `a proxy is set (${describeProxy(n.settings)}) but ${via} does not cover ${n.verdict.missing.map((m) => m.entry).join(', ')}: add them, e.g. ${n.verdict.line}`,
    );
  }
  return out;
}

export const describeProxy = (s: ProxySettings): string =>
  [s.https, s.http]
    .filter((v) => v !== undefined)
    .map((v) => `${v.variable}=${redactProxy(v.value)} from ${v.source}`)
    .join('; ');

/**
 * The boot's own check of the network settings, as warnings of the sandbox-image phase (the one that
 * calls AWS): started at once so that the user data is read while containerd comes up.
 */
export function withNetworkWarnings(phases: Phase[], network: Promise<NetworkFacts>): Phase[] {
  return phases.map((p) =>
    p.name !== 'sandbox-image'
      ? p
      : {
          ...p,
          run: async (ctx) => {
            const n = await network;
            for (const w of networkWarnings(n)) ctx.warn(w);
            if (hasProxy(n.settings)) ctx.record({ proxy: describeProxy(n.settings) });
            return p.run(ctx);
          },
        },
  );
}

// ── containerd's own proxy environment ────────────────────────────────────────────────────────

const SYSTEM_CONF = '/etc/systemd/system.conf';
const SYSTEM_CONF_DIRS = [
  '/etc/systemd/system.conf.d',
  '/run/systemd/system.conf.d',
  '/usr/lib/systemd/system.conf.d',
];

/** containerd.service's Environment=/EnvironmentFile=, then systemd's DefaultEnvironment= (what nodeadm's `default` writes). */
export function containerdProxy(
  files: FileReader,
  unit: string,
): { settings: ProxySettings; unitFound: boolean } {
  const u = loadUnit(files, unit);
  const env = unitEnvironment(files, u);
  const byFile = new Map<string, Record<string, string>>();
  for (const [k, v] of env.vars) byFile.set(v.file, { ...(byFile.get(v.file) ?? {}), [k]: v.value });
  const sources: EnvSource[] = [...byFile]
    .reverse()
    .map(([file, vars]) => ({ source: `${unit} (${file})`, vars }));
  const confs = [
    SYSTEM_CONF,
    ...SYSTEM_CONF_DIRS.flatMap((d) =>
      (files.list(d) ?? []).filter((f) => f.endsWith('.conf')).map((f) => `${d}/${f}`),
    ),
  ];
  const defaults: Record<string, string> = {};
  let where = '';
  for (const file of confs) {
    const c = files.read(file);
    if (!c.ok) continue;
    for (const d of parseUnitFile(c.text, file))
      if (d.section === 'Manager' && d.key === 'DefaultEnvironment')
        for (const w of splitWords(d.value)) {
          const eq = w.indexOf('=');
          if (eq > 0) {
            defaults[w.slice(0, eq)] = w.slice(eq + 1);
            where = file;
          }
        }
  }
  if (where) sources.push({ source: `DefaultEnvironment= (${where})`, vars: defaults });
  return { settings: proxySettings(sources), unitFound: u.file !== undefined };
}
