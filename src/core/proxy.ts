/**
 * The node's proxy, decided once and purely: which variables apply (the process environment, i.e.
 * the unit's Environment=/EnvironmentFile=, then NodeConfig's `spec.instance.environment`), which URL
 * goes through which proxy (NO_PROXY as Go and containerd read it: host suffixes, `*`, IP literals,
 * CIDRs, optional ports), and whether NO_PROXY covers what must never go through a proxy.
 * Node's own http/https/fetch ignore these variables: adapters ask `proxyFor` explicitly.
 */
import { BlockList, isIP } from 'node:net';

export type ProxyVarName = 'HTTPS_PROXY' | 'HTTP_PROXY' | 'NO_PROXY';
export const PROXY_VARS: readonly ProxyVarName[] = ['HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY'];

export interface ProxyValue {
  value: string;
  /** The variable as spelled where it was found (HTTPS_PROXY or https_proxy). */
  variable: string;
  /** Where: "process environment", "NodeConfig spec.instance.environment.default", … */
  source: string;
}

export interface ProxySettings {
  https?: ProxyValue;
  http?: ProxyValue;
  noProxy?: ProxyValue;
}

export interface EnvSource {
  source: string;
  vars: Record<string, string | undefined>;
}

/**
 * Each variable from the first source that sets it; within a source the upper-case spelling first
 * (as Go's net/http and containerd do), then the lower-case one. Empty values count as unset.
 */
export function proxySettings(sources: readonly EnvSource[]): ProxySettings {
  const out: ProxySettings = {};
  const keys: Record<ProxyVarName, keyof ProxySettings> = {
    HTTPS_PROXY: 'https',
    HTTP_PROXY: 'http',
    NO_PROXY: 'noProxy',
  };
  for (const name of PROXY_VARS) {
    for (const s of sources) {
      const variable = [name, name.toLowerCase()].find((v) => (s.vars[v] ?? '').trim() !== '');
      if (variable) {
        out[keys[name]] = { value: s.vars[variable]!.trim(), variable, source: s.source };
        break;
      }
    }
  }
  return out;
}

export const hasProxy = (s: ProxySettings): boolean => Boolean(s.https || s.http);

/** A proxy URL without its credentials, for messages and logs. */
export function redactProxy(url: string): string {
  try {
    const u = new URL(url.includes('://') ? url : `http://${url}`);
    if (u.username || u.password) {
      u.username = '***';
      u.password = '';
    }
    return u.href.replace(/\/$/, '');
  } catch {
    return '(a value that is not a URL)';
  }
}

/** The proxy URL as a client needs it (a bare host:port means http://host:port). */
export function proxyUrl(value: string): URL | undefined {
  try {
    const u = new URL(value.includes('://') ? value : `http://${value}`);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : undefined;
  } catch {
    return undefined;
  }
}

export interface NoProxyEntry {
  raw: string;
  kind: 'any' | 'ip' | 'cidr' | 'domain';
  host: string;
  port?: number;
}

const stripBrackets = (h: string): string => h.replace(/^\[(.*)\]$/, '$1');

export function parseNoProxy(value: string | undefined): NoProxyEntry[] {
  const out: NoProxyEntry[] = [];
  for (const raw of (value ?? '').split(/[,\s]+/)) {
    const e = raw.trim();
    if (!e) continue;
    if (e === '*') {
      out.push({ raw: e, kind: 'any', host: '*' });
      continue;
    }
    if (e.includes('/')) {
      out.push({ raw: e, kind: 'cidr', host: e });
      continue;
    }
    // host, host:port, [v6], [v6]:port, bare v6
    let host = e;
    let port: number | undefined;
    const v6port = /^\[([^\]]+)\](?::(\d+))?$/.exec(e);
    if (v6port) {
      host = v6port[1]!;
      if (v6port[2]) port = Number(v6port[2]);
    } else if (!isIP(e)) {
      const m = /^(.*):(\d+)$/.exec(e);
      if (m) {
        host = m[1]!;
        port = Number(m[2]);
      }
    }
    host = host.toLowerCase();
    out.push({ raw: e, kind: isIP(host) ? 'ip' : 'domain', host, ...(port ? { port } : {}) });
  }
  return out;
}

function inCidr(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/');
  const family = isIP(net ?? '');
  const prefix = Number(bits);
  if (!family || family !== isIP(ip) || !Number.isInteger(prefix)) return false;
  const list = new BlockList();
  try {
    list.addSubnet(net!, prefix, family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    return false;
  }
  return list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/** True when NO_PROXY sends host:port direct. */
export function bypasses(entries: readonly NoProxyEntry[], hostname: string, port?: number): boolean {
  const host = stripBrackets(hostname.toLowerCase()).replace(/\.$/, '');
  for (const e of entries) {
    if (e.port !== undefined && port !== undefined && e.port !== port) continue;
    switch (e.kind) {
      case 'any':
        return true;
      case 'ip':
        if (isIP(host) && host === e.host) return true;
        break;
      case 'cidr':
        if (isIP(host) && inCidr(host, e.host)) return true;
        break;
      case 'domain': {
        const d = e.host.replace(/^\*?\./, '');
        if (host === d || host.endsWith(`.${d}`)) return true;
      }
    }
  }
  return false;
}

/** The proxy a request to `url` goes through, or undefined for a direct connection. */
export function proxyFor(url: URL, s: ProxySettings): ProxyValue | undefined {
  const via = url.protocol === 'https:' ? s.https : url.protocol === 'http:' ? s.http : undefined;
  if (!via) return undefined;
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return bypasses(parseNoProxy(s.noProxy?.value), url.hostname, port) ? undefined : via;
}

// ── the NO_PROXY verdict ──────────────────────────────────────────────────────────────────────

export const IMDS_HOSTS = ['169.254.169.254', 'fd00:ec2::254'] as const;

export interface NoProxyNeed {
  entry: string;
  why: string;
}

export interface NoProxyVerdict {
  /** No proxy configured: nothing to check. */
  proxied: boolean;
  /** Must be in NO_PROXY; each with why. */
  missing: NoProxyNeed[];
  /** Should be (pods' in-cluster traffic, the VPC): advice. */
  recommended: NoProxyNeed[];
  /** The NO_PROXY value with what is missing (and recommended) appended; '' when nothing to add. */
  line: string;
}

export interface NoProxyInput {
  settings: ProxySettings;
  /** spec.cluster.apiServerEndpoint from NodeConfig (or kubelet's kubeconfig). */
  clusterEndpoint?: string;
}

export function noProxyVerdict(input: NoProxyInput): NoProxyVerdict {
  const { settings } = input;
  if (!hasProxy(settings)) return { proxied: false, missing: [], recommended: [], line: '' };
  const entries = parseNoProxy(settings.noProxy?.value);
  const covered = (host: string, port?: number) => bypasses(entries, host, port);
  const missing: NoProxyNeed[] = [];
  if (!covered(IMDS_HOSTS[0]))
    missing.push({
      entry: IMDS_HOSTS[0],
      why: 'IMDS (IPv4): instance credentials and region must never go through a proxy',
    });
  if (!covered(IMDS_HOSTS[1])) missing.push({ entry: IMDS_HOSTS[1], why: 'IMDS (IPv6 endpoint)' });
  if (!covered('localhost')) missing.push({ entry: 'localhost', why: 'local services' });
  if (!covered('127.0.0.1')) missing.push({ entry: '127.0.0.1', why: 'local services (loopback)' });
  if (input.clusterEndpoint) {
    const u = URL.canParse(input.clusterEndpoint) ? new URL(input.clusterEndpoint) : undefined;
    if (u && !covered(u.hostname, u.port ? Number(u.port) : 443)) {
      const host = stripBrackets(u.hostname.toLowerCase());
      // EKS endpoints: one suffix entry covers every cluster of the region.
      const eks = /\.([a-z0-9-]+\.eks\.amazonaws\.com(?:\.cn)?)$/.exec(host);
      missing.push({
        entry: eks ? `.${eks[1]}` : host,
        why: `the cluster endpoint ${host} (kubelet and in-cluster clients talk to it through the VPC)`,
      });
    }
  }
  const recommended: NoProxyNeed[] = [];
  if (!covered('kubernetes.default.svc'))
    recommended.push({ entry: '.svc', why: 'in-cluster service names' });
  if (!covered('kubernetes.default.svc.cluster.local'))
    recommended.push({ entry: '.cluster.local', why: 'in-cluster DNS names' });
  if (!entries.some((e) => e.kind === 'cidr'))
    recommended.push({ entry: '<VPC CIDR>', why: 'node and pod addresses in the VPC (e.g. 10.0.0.0/16)' });
  const add = [...missing, ...recommended.filter((r) => !r.entry.startsWith('<'))].map((n) => n.entry);
  const current = settings.noProxy?.value ?? '';
  const line =
    add.length === 0 && missing.length === 0 ? '' : `NO_PROXY=${[current, ...add].filter(Boolean).join(',')}`;
  return { proxied: true, missing, recommended, line };
}
