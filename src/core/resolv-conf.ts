/**
 * resolv.conf as kubelet reads it, the rules that decide whether pods can use it, and the corrected
 * copy `resolvConfPolicy: repair` writes. Pure: the file's content comes in, problems come out.
 *
 * kubelet (pkg/kubelet/network/dns): parseResolvConf reads `nameserver` lines (they accumulate; one
 * without an address is an error that fails pod creation), the LAST `search` line (trailing dots
 * trimmed) and the LAST `options` line; `domain` and `sortlist` are ignored; only `#` starts a
 * comment. For pods it keeps 3 nameservers (validation.MaxDNSNameservers) and a search list of at
 * most 32 domains (MaxDNSSearchPaths) and 2048 characters (MaxDNSSearchListChars), dropping domains
 * over 253 characters (DNS1123SubdomainMaxLength); it puts its 3 cluster domains in front, so its own
 * node-level check allows the host 32 - 3 = 29 domains when clusterDomain is set.
 * containerd writes the pod's resolv.conf from what kubelet parsed; up to 1.7.19 an entirely empty
 * DNS config made it copy the host's /etc/resolv.conf instead, 1.7.20 removed that fallback.
 */
import { isIP } from 'node:net';
import type { ContainerdCapabilities } from './containerd-version.js';
import { describeReadError, type FileContent } from './file-reader.js';
import type { Setting } from './kubelet-settings.js';

export const KUBELET_DNS = {
  maxNameservers: 3,
  maxSearchPaths: 32,
  maxSearchListChars: 2048,
  maxSearchDomainChars: 253,
  clusterSearchDomains: 3,
  maxFileBytes: 10 << 20,
} as const;

/** systemd-resolved: the stub it lists in /etc/resolv.conf, and the file with its upstream servers. */
export const RESOLVED_STUBS = ['127.0.0.53', '127.0.0.54'];
export const RESOLVED_UPSTREAM_FILE = '/run/systemd/resolve/resolv.conf';

/** resolv.conf(5) options glibc knows; anything else is ignored by the resolver. */
const GLIBC_OPTIONS = new Set([
  'debug',
  'ndots',
  'timeout',
  'attempts',
  'rotate',
  'no-check-names',
  'inet6',
  'ip6-bytestring',
  'ip6-dotint',
  'no-ip6-dotint',
  'edns0',
  'single-request',
  'single-request-reopen',
  'no-tld-query',
  'use-vc',
  'no-reload',
  'trust-ad',
  'no-aaaa',
]);
const NUMERIC_OPTIONS = new Set(['ndots', 'timeout', 'attempts']);

export interface Nameserver {
  address: string;
  line: number;
  /** Words after the address that are not a comment (ignored by every resolver). */
  extra: string[];
}

export interface ResolvConf {
  nameservers: Nameserver[];
  search: { domains: string[]; line: number }[];
  domain: { value: string; line: number }[];
  options: { options: string[]; line: number }[];
  sortlist: number[];
  /** Lines no resolver can use: unknown keyword, nameserver without a valid address, binary. */
  bad: { line: number; text: string; why: string }[];
  crlf: boolean;
  /** True when anything but blank lines and comments is in the file. */
  hasContent: boolean;
}

const KEYWORDS = new Set(['nameserver', 'search', 'domain', 'options', 'sortlist']);
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;

const stripComment = (words: string[]): string[] => {
  const i = words.findIndex((w) => w.startsWith('#') || w.startsWith(';'));
  return i < 0 ? words : words.slice(0, i);
};

export function parseResolvConf(text: string): ResolvConf {
  const r: ResolvConf = {
    nameservers: [],
    search: [],
    domain: [],
    options: [],
    sortlist: [],
    bad: [],
    crlf: text.includes('\r\n'),
    hasContent: false,
  };
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) return;
    r.hasContent = true;
    const shown = trimmed.length > 60 ? `${trimmed.slice(0, 57)}...` : trimmed;
    if (CONTROL.test(trimmed)) {
      r.bad.push({ line, text: JSON.stringify(shown).slice(1, -1), why: 'binary content (not a text file)' });
      return;
    }
    const [keyword, ...rest] = trimmed.split(/\s+/) as [string, ...string[]];
    const args = stripComment(rest);
    if (!KEYWORDS.has(keyword)) {
      const near = [...KEYWORDS].find((k) => k.toLowerCase() === keyword.toLowerCase());
      r.bad.push({
        line,
        text: shown,
        why: near
          ? `\`${keyword}\` is not \`${near}\` (keywords are case-sensitive)`
          : `unknown keyword \`${keyword}\``,
      });
      return;
    }
    switch (keyword) {
      case 'nameserver': {
        const [address, ...extra] = args;
        if (address === undefined)
          r.bad.push({ line, text: shown, why: 'nameserver without an address (kubelet fails every pod)' });
        else if (!isAddress(address))
          r.bad.push({
            line,
            text: shown,
            why: `\`${address}\` is not an IP address (resolvers take no names here)`,
          });
        else r.nameservers.push({ address, line, extra });
        break;
      }
      case 'search':
        r.search.push({ domains: args.map((d) => d.replace(/\.$/, '')).filter(Boolean), line });
        break;
      case 'domain':
        if (args[0]) r.domain.push({ value: args[0].replace(/\.$/, ''), line });
        break;
      case 'options':
        r.options.push({ options: args, line });
        break;
      case 'sortlist':
        r.sortlist.push(line);
        break;
    }
  });
  return r;
}

function isAddress(a: string): boolean {
  const pct = a.indexOf('%');
  const bare = pct > 0 ? a.slice(0, pct) : a;
  return isIP(bare) === 4 || (isIP(bare) === 6 && (pct < 0 || pct < a.length - 1));
}

export function isLoopback(address: string): boolean {
  const a = address.toLowerCase().replace(/%.*$/, '');
  if (isIP(a) === 4) return a.startsWith('127.') || a === '0.0.0.0';
  return a === '::1' || a === '::' || /^::ffff:127\./.test(a) || /^(0+:){7}0*1$/.test(a);
}

/** The search list kubelet takes from the host file: the last `search` line. */
export const effectiveSearch = (r: ResolvConf): string[] => r.search.at(-1)?.domains ?? [];
/** The options kubelet takes: the last `options` line. */
export const effectiveOptions = (r: ResolvConf): string[] => r.options.at(-1)?.options ?? [];

export type Severity = 'error' | 'warning';
export type ProblemId =
  | 'disabled'
  | 'missing'
  | 'unreadable'
  | 'too-large'
  | 'empty'
  | 'no-nameserver'
  | 'loopback-only'
  | 'unparsable'
  | 'too-many-nameservers'
  | 'duplicate-nameserver'
  | 'loopback-mixed'
  | 'nameserver-extra'
  | 'search-too-many'
  | 'search-domain-too-long'
  | 'search-too-long'
  | 'multiple-search'
  | 'domain-ignored'
  | 'multiple-options'
  | 'unknown-option'
  | 'sortlist-ignored'
  | 'crlf';

export interface Problem {
  id: ProblemId;
  severity: Severity;
  message: string;
  /** What to change, naming the file or setting. */
  fix: string;
}

export interface ResolvConfInput {
  /** The file kubelet will use ('' = none) and where that setting came from. */
  choice: Setting<string>;
  /** What reading choice.value gave (absent when choice.value is ''). */
  content?: FileContent;
  /** The cri phase's facts (the containerd version), when it ran. */
  containerd?: ContainerdCapabilities;
  /** kubelet's clusterDomain is (or is assumed) non-empty: it adds 3 search domains of its own. */
  clusterDomain: boolean;
}

/** "change --resolv-conf in $KUBELET_EXTRA_ARGS (/etc/eks/kubelet/environment)" and the like. */
export function whereToFix(choice: Setting<string>, what: string): string {
  switch (choice.source.kind) {
    case 'node-bootstrap':
      return `${what}, or change kubelet.resolvConf in node-bootstrap's config.yaml`;
    case 'cli':
      return what;
    case 'flag':
    case 'kubelet-config':
      return `${what}, or change ${choice.source.where}`;
    default:
      return `${what}, or set resolvConf in kubelet's config file to a usable file`;
  }
}

/** "change resolvConf in /etc/kubernetes/kubelet/config.json to /run/systemd/resolve/resolv.conf" and the like. */
export function pointKubeletAt(choice: Setting<string>, path: string): string {
  switch (choice.source.kind) {
    case 'flag':
    case 'kubelet-config':
      return `change ${choice.source.where} to ${path}`;
    case 'node-bootstrap':
      return `point kubelet at ${path} (resolvConf in kubelet's config) and kubelet.resolvConf in node-bootstrap's config.yaml`;
    case 'cli':
      return `point kubelet at ${path}`;
    default:
      return `set resolvConf: ${path} in kubelet's config file`;
  }
}

function containerdFallbackNote(caps: ContainerdCapabilities | undefined): string {
  const effect =
    'every pod with dnsPolicy Default (CoreDNS itself, hostNetwork pods such as aws-node) starts with no nameserver';
  if (!caps)
    return `containerd 1.7.20+ no longer falls back to the host's /etc/resolv.conf when kubelet hands it an empty DNS config: ${effect} (containerd's version is unknown here)`;
  if (caps.noResolvConfFallback)
    return `containerd ${caps.version} (1.7.20+) no longer falls back to the host's /etc/resolv.conf when kubelet hands it an empty DNS config: ${effect}`;
  return `containerd ${caps.version} still copies the host's /etc/resolv.conf for an empty DNS config, but 1.7.20 removed that fallback: after the next containerd upgrade ${effect}`;
}

const list = (xs: readonly string[], max = 5): string =>
  xs.length <= max ? xs.join(', ') : `${xs.slice(0, max).join(', ')} and ${xs.length - max} more`;

export function resolvConfProblems(input: ResolvConfInput): Problem[] {
  const { choice, content } = input;
  const path = choice.value;
  const from = `kubelet's resolv.conf (${choice.source.where})`;
  if (path === '')
    return [
      {
        id: 'disabled',
        severity: 'error',
        message: `kubelet is told to use no resolv.conf (an empty resolvConf, ${choice.source.where}): pods with dnsPolicy Default get nameserver 127.0.0.1 and search ".", which reach nothing`,
        fix: whereToFix(choice, 'point kubelet at a resolv.conf that lists reachable nameservers'),
      },
    ];
  if (!content?.ok) {
    const code = content?.ok === false ? content.code : 'ENOENT';
    const dangling =
      content?.ok === false && content.resolved && content.resolved !== path
        ? ` (a symlink to ${content.resolved}${content.resolved.startsWith('/run/systemd/resolve/') ? ', which systemd-resolved writes only while it runs' : ''})`
        : '';
    if (code === 'EFBIG')
      return [
        {
          id: 'too-large',
          severity: 'error',
          message: `${path}, ${from}, is larger than kubelet's 10 MiB limit: kubelet fails every pod`,
          fix: whereToFix(choice, `replace ${path} with a normal resolv.conf`),
        },
      ];
    return [
      {
        id: code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'unreadable',
        severity: 'error',
        message: `${path}, ${from}, ${describeReadError(code)}${dangling}: kubelet cannot create any pod with dnsPolicy Default`,
        fix: whereToFix(choice, `create ${path} listing reachable nameservers`),
      },
    ];
  }
  if (content.bytes > KUBELET_DNS.maxFileBytes)
    return [
      {
        id: 'too-large',
        severity: 'error',
        message: `${path}, ${from}, is larger than kubelet's 10 MiB limit: kubelet fails every pod`,
        fix: whereToFix(choice, `replace ${path} with a normal resolv.conf`),
      },
    ];

  const r = parseResolvConf(content.text);
  const shownPath = content.resolved !== path ? `${path} (→ ${content.resolved})` : path;
  const out: Problem[] = [];
  const add = (id: ProblemId, severity: Severity, message: string, fix: string) =>
    out.push({ id, severity, message, fix });

  if (r.bad.length > 0)
    add(
      'unparsable',
      'error',
      `${shownPath}: ${r.bad.length === 1 ? 'a line' : `${r.bad.length} lines`} no resolver can use: ${r.bad
        .slice(0, 4)
        .map((b) => `line ${b.line} \`${b.text}\`: ${b.why}`)
        .join('; ')}${r.bad.length > 4 ? `; and ${r.bad.length - 4} more` : ''}`,
      whereToFix(
        choice,
        `fix or remove line${r.bad.length === 1 ? '' : 's'} ${list(
          r.bad.map((b) => String(b.line)),
          8,
        )} of ${content.resolved}`,
      ),
    );

  const usable = r.nameservers.filter((n) => !isLoopback(n.address));
  if (r.nameservers.length === 0) {
    const empty = !r.hasContent;
    add(
      empty ? 'empty' : 'no-nameserver',
      'error',
      empty
        ? `${shownPath}, ${from}, is empty: ${containerdFallbackNote(input.containerd)}`
        : `${shownPath}, ${from}, has no usable nameserver line: kubelet hands pods with dnsPolicy Default (CoreDNS, aws-node) no nameserver, so CoreDNS can resolve nothing outside the cluster`,
      whereToFix(
        choice,
        `list the node's resolvers in ${content.resolved} (e.g. nameserver 169.254.169.253, the VPC resolver)`,
      ),
    );
  } else if (usable.length === 0) {
    const stub = r.nameservers.find((n) => RESOLVED_STUBS.includes(n.address));
    const addrs = list([...new Set(r.nameservers.map((n) => n.address))]);
    add(
      'loopback-only',
      'error',
      stub
        ? `${shownPath}, ${from}, lists only ${addrs}: ${stub.address} is systemd-resolved's stub on the node's loopback, which pods cannot reach (in a pod's network namespace it is the pod itself); CoreDNS would forward to itself and crash-loop on its loop check`
        : `${shownPath}, ${from}, lists only loopback nameservers (${addrs}): pods cannot reach a resolver on the node's loopback, so CoreDNS and every dnsPolicy Default pod get no DNS`,
      stub
        ? `${pointKubeletAt(choice, RESOLVED_UPSTREAM_FILE)} (the upstream servers systemd-resolved uses)`
        : whereToFix(
            choice,
            'point kubelet at a file that lists the upstream resolvers (e.g. the VPC resolver 169.254.169.253)',
          ),
    );
  }

  // Warnings: what kubelet silently drops or changes.
  const firstThree = r.nameservers.slice(0, KUBELET_DNS.maxNameservers);
  if (usable.length > 0 && firstThree.some((n) => isLoopback(n.address))) {
    const lo = firstThree.filter((n) => isLoopback(n.address)).map((n) => n.address);
    add(
      'loopback-mixed',
      'warning',
      `${shownPath}: pods cannot reach ${list(lo)} (node loopback); every lookup waits for it to time out before the next nameserver is tried`,
      `remove ${list(lo)} from ${content.resolved}, or point kubelet at a file without it`,
    );
  }
  const addresses = r.nameservers.map((n) => n.address);
  const dupes = [...new Set(addresses.filter((a, i) => addresses.indexOf(a) !== i))];
  if (dupes.length > 0)
    add(
      'duplicate-nameserver',
      'warning',
      `${shownPath}: nameserver ${list(dupes)} is listed more than once and takes one of the 3 slots each time`,
      `remove the duplicate nameserver lines from ${content.resolved}`,
    );
  if (r.nameservers.length > KUBELET_DNS.maxNameservers) {
    const dropped = r.nameservers.slice(KUBELET_DNS.maxNameservers).map((n) => n.address);
    add(
      'too-many-nameservers',
      'warning',
      `${shownPath} lists ${r.nameservers.length} nameservers: kubelet keeps the first ${KUBELET_DNS.maxNameservers} for pods and drops ${list(dropped)} (with a DNSConfigForming event on every pod)`,
      `keep at most ${KUBELET_DNS.maxNameservers} nameserver lines in ${content.resolved}`,
    );
  }
  for (const n of r.nameservers.filter((x) => x.extra.length > 0))
    add(
      'nameserver-extra',
      'warning',
      `${shownPath} line ${n.line}: only the first address of a nameserver line counts; ${list(n.extra)} is ignored`,
      `put each nameserver on its own line in ${content.resolved}`,
    );

  const search = effectiveSearch(r);
  if (r.search.length > 1)
    add(
      'multiple-search',
      'warning',
      `${shownPath} has ${r.search.length} search lines: only the last (line ${r.search.at(-1)!.line}) counts, for kubelet and for the resolver; ${list(r.search.slice(0, -1).flatMap((s) => s.domains)) || 'nothing'} on earlier lines is ignored`,
      `merge the search lines of ${content.resolved} into one`,
    );
  const countLimit =
    KUBELET_DNS.maxSearchPaths - (input.clusterDomain ? KUBELET_DNS.clusterSearchDomains : 0);
  if (search.length > countLimit)
    add(
      'search-too-many',
      'warning',
      `${shownPath}: ${search.length} search domains, over kubelet's limit of ${countLimit} (${KUBELET_DNS.maxSearchPaths}${input.clusterDomain ? `, minus the ${KUBELET_DNS.clusterSearchDomains} cluster domains kubelet puts first` : ''}): pods get only the first ones`,
      `keep at most ${countLimit} domains on the search line of ${content.resolved}`,
    );
  const long = search.filter((d) => d.length > KUBELET_DNS.maxSearchDomainChars);
  if (long.length > 0)
    add(
      'search-domain-too-long',
      'warning',
      `${shownPath}: ${long.length} search domain(s) longer than ${KUBELET_DNS.maxSearchDomainChars} characters (${list(long.map((d) => `${d.slice(0, 20)}…`))}): kubelet drops them for pods (some glibc versions abort on them)`,
      `remove search domains over ${KUBELET_DNS.maxSearchDomainChars} characters from ${content.resolved}`,
    );
  const chars = search.join(' ').length;
  if (chars > KUBELET_DNS.maxSearchListChars)
    add(
      'search-too-long',
      'warning',
      `${shownPath}: the search line is ${chars} characters, over kubelet's ${KUBELET_DNS.maxSearchListChars}: kubelet cuts domains from its end for pods (after its own cluster domains)`,
      `shorten the search line of ${content.resolved} to at most ${KUBELET_DNS.maxSearchListChars} characters`,
    );
  const ignoredDomains = r.domain.filter((d) => !search.includes(d.value));
  if (ignoredDomains.length > 0)
    add(
      'domain-ignored',
      'warning',
      `${shownPath}: kubelet ignores \`domain\` lines, so pods never get ${list(ignoredDomains.map((d) => d.value))} as a search domain (the node's own resolver does)`,
      `add ${list(ignoredDomains.map((d) => d.value))} to the search line of ${content.resolved}`,
    );

  if (r.options.length > 1)
    add(
      'multiple-options',
      'warning',
      `${shownPath} has ${r.options.length} options lines: kubelet passes only the last (line ${r.options.at(-1)!.line}) to pods, so ${list(r.options.slice(0, -1).flatMap((o) => o.options)) || 'nothing'} never reach them (the node's resolver merges all lines)`,
      `merge the options lines of ${content.resolved} into one`,
    );
  const unknown = r.options
    .flatMap((o) => o.options)
    .filter((o) => {
      const [name, value] = o.split(':', 2) as [string, string | undefined];
      if (!GLIBC_OPTIONS.has(name)) return true;
      return NUMERIC_OPTIONS.has(name) && !(value !== undefined && /^\d+$/.test(value));
    });
  if (unknown.length > 0)
    add(
      'unknown-option',
      'warning',
      `${shownPath}: the resolver ignores option${unknown.length > 1 ? 's' : ''} ${list(unknown)} (unknown, or a value that is not a number)`,
      `fix or remove ${list(unknown)} in ${content.resolved} (see resolv.conf(5))`,
    );
  if (r.sortlist.length > 0)
    add(
      'sortlist-ignored',
      'warning',
      `${shownPath}: kubelet ignores \`sortlist\` (line ${r.sortlist.join(', ')}): pods never get it`,
      `remove the sortlist line from ${content.resolved}`,
    );
  if (r.crlf)
    add(
      'crlf',
      'warning',
      `${shownPath} has CRLF (Windows) line endings: kubelet copes, but the node's own glibc resolver ignores nameserver lines ending in \\r`,
      `convert ${content.resolved} to LF line endings (dos2unix)`,
    );
  return out;
}

export const hasErrors = (ps: readonly Problem[]): boolean => ps.some((p) => p.severity === 'error');

export interface RepairSource {
  path: string;
  /** Undefined when the file could not be read. */
  parsed?: ResolvConf;
}

export interface Repaired {
  text: string;
  /** What was changed, one short phrase each (for the journal and status.json). */
  changes: string[];
  nameservers: string[];
}

/**
 * The corrected copy `repair` writes: the original's usable nameservers (else those of the first
 * fallback that has some: the host's /etc/resolv.conf, which containerd used to copy, then
 * systemd-resolved's upstream file), at most 3; the last search line within kubelet's limits; the
 * options merged into one line, unknown ones dropped. Undefined when no usable nameserver exists.
 */
export function repairResolvConf(
  original: RepairSource,
  fallbacks: readonly RepairSource[],
  opts: { clusterDomain: boolean; header: string },
): Repaired | undefined {
  const changes: string[] = [];
  const usable = (r: ResolvConf | undefined): string[] => [
    ...new Set((r?.nameservers ?? []).map((n) => n.address).filter((a) => !isLoopback(a))),
  ];
  let servers = usable(original.parsed);
  let searchFrom = original.parsed;
  const dropped = (original.parsed?.nameservers ?? [])
    .filter((n) => isLoopback(n.address))
    .map((n) => n.address);
  if (dropped.length > 0) changes.push(`dropped loopback nameserver ${list([...new Set(dropped)])}`);
  if ((original.parsed?.bad.length ?? 0) > 0)
    changes.push(`dropped unusable line ${list(original.parsed!.bad.map((b) => String(b.line)))}`);
  if (servers.length === 0) {
    const fb = fallbacks.find((f) => f.path !== original.path && usable(f.parsed).length > 0);
    if (!fb) return undefined;
    servers = usable(fb.parsed);
    changes.push(`nameservers from ${fb.path}`);
    if (effectiveSearch(original.parsed ?? emptyResolvConf()).length === 0) searchFrom = fb.parsed;
  }
  if (servers.length > KUBELET_DNS.maxNameservers) {
    changes.push(`kept the first ${KUBELET_DNS.maxNameservers} of ${servers.length} nameservers`);
    servers = servers.slice(0, KUBELET_DNS.maxNameservers);
  }
  const r = searchFrom ?? emptyResolvConf();
  let search = effectiveSearch(r);
  if (search.length === 0 && r.domain.length > 0) {
    search = [r.domain.at(-1)!.value];
    changes.push('search from the domain line');
  }
  const before = search.length;
  search = search.filter((d) => d.length <= KUBELET_DNS.maxSearchDomainChars);
  const countLimit = KUBELET_DNS.maxSearchPaths - (opts.clusterDomain ? KUBELET_DNS.clusterSearchDomains : 0);
  search = search.slice(0, countLimit);
  while (search.length > 0 && search.join(' ').length > KUBELET_DNS.maxSearchListChars) search.pop();
  if (search.length < before) changes.push(`search list cut to ${search.length} of ${before} domains`);
  const merged = new Map<string, string>();
  for (const o of (original.parsed ?? r).options.flatMap((x) => x.options)) {
    const name = o.split(':', 1)[0]!;
    if (GLIBC_OPTIONS.has(name)) merged.set(name, o);
  }
  const lines = [
    ...opts.header.split('\n').map((l) => `# ${l}`.trimEnd()),
    ...servers.map((s) => `nameserver ${s}`),
    ...(search.length > 0 ? [`search ${search.join(' ')}`] : []),
    ...(merged.size > 0 ? [`options ${[...merged.values()].join(' ')}`] : []),
  ];
  return { text: `${lines.join('\n')}\n`, changes, nameservers: servers };
}

function emptyResolvConf(): ResolvConf {
  return parseResolvConf('');
}
