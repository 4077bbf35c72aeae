/**
 * What containerd's rendered config says: the sandbox (pause) reference, the registry hosts
 * directory, the snapshotter, root, state and the gRPC socket. Pure over a FileReader snapshot.
 *
 * Read the way containerd reads it (services/server/config in containerd 1.6 to 2.x):
 * - the main file first, then `imports` breadth-first; a relative import is relative to the file
 *   naming it, an import with `*` is a glob (no match is no error), a file is loaded once;
 * - each file merged over the result: a non-empty value replaces, lists append, and a plugin's
 *   section (`[plugins."<id>"]`) replaces the whole earlier section of that plugin;
 * - `version` absent or 1: short plugin names (`[plugins.cri]`); 2: full ids
 *   (`io.containerd.grpc.v1.cri` holds `sandbox_image`, `registry.config_path`,
 *   `containerd.snapshotter`); 3 (containerd 2.x): the image settings moved to
 *   `io.containerd.cri.v1.images` (`pinned_images.sandbox`, `registry.config_path`, `snapshotter`).
 * Nothing here reimplements nodeadm: its output, the rendered file, is read as containerd reads it.
 */
import { parse, TomlError } from 'smol-toml';
import { BootError } from '../errors.js';
import { describeReadError, type FileReader } from './file-reader.js';

export const CONTAINERD_CONFIG_FILE = '/etc/containerd/config.toml';
export const CRI_PLUGIN_V2 = 'io.containerd.grpc.v1.cri';
export const CRI_IMAGES_PLUGIN_V3 = 'io.containerd.cri.v1.images';
const CRI_PLUGIN_IDS = [CRI_PLUGIN_V2, CRI_IMAGES_PLUGIN_V3, 'io.containerd.cri.v1.runtime', 'cri'];

/** containerd's built-in defaults on Linux. */
export const CONTAINERD_DEFAULTS = {
  root: '/var/lib/containerd',
  state: '/run/containerd',
  address: '/run/containerd/containerd.sock',
} as const;

/** A value and where it came from, for messages: `sandbox_image in /etc/containerd/config.toml`. */
export interface Found<T> {
  value: T;
  where: string;
}

export interface ContainerdConfig {
  /** The main file (absent when it does not exist: containerd then runs on its defaults). */
  file: string;
  /** Files loaded, in containerd's order (main file first); empty when the main file is absent. */
  files: string[];
  /** The schema version containerd applies (1 when no file sets one). */
  version: number;
  root: Found<string>;
  state: Found<string>;
  address: Found<string>;
  /** The sandbox (pause) reference as written (undefined: containerd's built-in default applies). */
  sandboxImage?: Found<string>;
  /** registry.config_path: the hosts.toml directory. */
  configPath?: Found<string>;
  snapshotter?: Found<string>;
  /** A CRI plugin is listed in disabled_plugins (CRI calls answer UNIMPLEMENTED). */
  criDisabled: boolean;
  /** Things worth a warning: settings containerd ignores in this schema version. */
  notes: string[];
}

type Table = Record<string, unknown>;
const isTable = (x: unknown): x is Table => typeof x === 'object' && x !== null && !Array.isArray(x);
const str = (x: unknown): string | undefined => (typeof x === 'string' && x !== '' ? x : undefined);

/** One file's top-level keys that matter here, with where each came from. */
interface Layer {
  file: string;
  doc: Table;
}

function parseFile(reader: FileReader, file: string, importedBy?: string): Layer | undefined {
  const c = reader.read(file);
  if (!c.ok) {
    if (c.code === 'ENOENT' && importedBy === undefined) return undefined;
    throw new BootError(
      'CONTAINERD_CONFIG_INVALID',
      `${file}${importedBy ? ` (imported by ${importedBy})` : ''} ${describeReadError(c.code)}: containerd will not start with it`,
      {
        hint: importedBy
          ? `create ${file} or remove it from imports in ${importedBy}`
          : `make ${file} readable by root`,
      },
    );
  }
  try {
    return { file, doc: parse(c.text) as Table };
  } catch (err) {
    const where = err instanceof TomlError ? `line ${err.line}, column ${err.column}` : 'here';
    const why = (err as Error).message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
    throw new BootError(
      'CONTAINERD_CONFIG_INVALID',
      `${file}: TOML syntax error at ${where}: ${why}; containerd will not start with it`,
      { hint: `fix the TOML syntax in ${file} (or the tool that renders it), then restart containerd` },
    );
  }
}

/** `*`, `?` and `[...]` in one path segment, as Go's filepath.Match. */
function segmentMatcher(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${pattern.slice(i + 1, end).replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** filepath.Glob over the reader: sorted matches, no error when nothing matches. */
export function globFiles(reader: FileReader, pattern: string): string[] {
  const abs = pattern.startsWith('/') ? pattern : `/${pattern}`;
  let paths = ['/'];
  for (const seg of abs.split('/').filter(Boolean)) {
    const next: string[] = [];
    for (const dir of paths) {
      const base = dir === '/' ? '' : dir;
      if (!/[*?[]/.test(seg)) {
        next.push(`${base}/${seg}`);
        continue;
      }
      const m = segmentMatcher(seg);
      for (const name of reader.list(dir) ?? []) if (m.test(name)) next.push(`${base}/${name}`);
    }
    paths = next;
  }
  return paths.filter((p) => reader.exists(p)).sort();
}

function resolveImports(reader: FileReader, parent: string, imports: unknown): string[] {
  if (!Array.isArray(imports)) return [];
  const dir = parent.slice(0, parent.lastIndexOf('/')) || '/';
  const out: string[] = [];
  for (const raw of imports) {
    if (typeof raw !== 'string' || raw === '') continue;
    if (raw.includes('*')) out.push(...globFiles(reader, raw.startsWith('/') ? raw : `/${raw}`));
    else out.push(normalizePath(raw.startsWith('/') ? raw : `${dir}/${raw}`));
  }
  return out;
}

function normalizePath(p: string): string {
  const parts: string[] = [];
  for (const s of p.split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') parts.pop();
    else parts.push(s);
  }
  return `/${parts.join('/')}`;
}

/** A value down a path of tables, or undefined. */
function dig(t: unknown, ...path: string[]): unknown {
  let cur = t;
  for (const k of path) {
    if (!isTable(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/**
 * Reads containerd's config (and its imports) as containerd would. A missing main file is not an
 * error (containerd runs on its defaults); a file that does not parse, or a missing import, is
 * CONTAINERD_CONFIG_INVALID: containerd refuses to start with it too.
 */
export function readContainerdConfig(reader: FileReader, file = CONTAINERD_CONFIG_FILE): ContainerdConfig {
  const layers: Layer[] = [];
  const loaded = new Set<string>();
  const pending: { path: string; by?: string }[] = [{ path: file }];
  while (pending.length > 0) {
    const { path, by } = pending.shift()!;
    if (loaded.has(path)) continue;
    const layer = parseFile(reader, path, by);
    if (!layer) break;
    layers.push(layer);
    loaded.add(path);
    for (const p of resolveImports(reader, path, layer.doc.imports)) pending.push({ path: p, by: path });
  }

  // Merge: a non-empty scalar replaces, lists append, a plugin's section replaces the earlier one.
  let version = 0;
  const top: Record<'root' | 'state', Found<string> | undefined> = { root: undefined, state: undefined };
  let address: Found<string> | undefined;
  const disabled: string[] = [];
  const plugins = new Map<string, { section: unknown; file: string }>();
  for (const { file: f, doc } of layers) {
    if (typeof doc.version === 'number' && doc.version !== 0) version = doc.version;
    for (const k of ['root', 'state'] as const) {
      const v = str(doc[k]);
      if (v) top[k] = { value: v, where: `${k} in ${f}` };
    }
    const a = str(dig(doc, 'grpc', 'address'));
    if (a) address = { value: a, where: `[grpc] address in ${f}` };
    if (Array.isArray(doc.disabled_plugins))
      disabled.push(...doc.disabled_plugins.filter((p): p is string => typeof p === 'string'));
    if (isTable(doc.plugins))
      for (const [id, section] of Object.entries(doc.plugins)) plugins.set(id, { section, file: f });
  }
  const effective = version === 0 ? 1 : version;
  const notes: string[] = [];
  const plugin = (id: string) => {
    // v1 named plugins by their short name (`cri`); containerd maps it to the full id.
    const p = plugins.get(id) ?? (effective < 2 && id === CRI_PLUGIN_V2 ? plugins.get('cri') : undefined);
    return p
      ? { ...p, label: effective < 2 && !plugins.has(id) ? 'plugins.cri' : `plugins."${id}"` }
      : undefined;
  };
  const setting = (id: string, keys: string[], name: string): Found<string> | undefined => {
    const p = plugin(id);
    const v = p ? str(dig(p.section, ...keys)) : undefined;
    return v && p ? { value: v, where: `${name} under [${p.label}] in ${p.file}` } : undefined;
  };

  let sandboxImage: Found<string> | undefined;
  let configPath: Found<string> | undefined;
  let snapshotter: Found<string> | undefined;
  if (effective >= 3) {
    sandboxImage = setting(CRI_IMAGES_PLUGIN_V3, ['pinned_images', 'sandbox'], 'pinned_images.sandbox');
    configPath = setting(CRI_IMAGES_PLUGIN_V3, ['registry', 'config_path'], 'registry.config_path');
    snapshotter = setting(CRI_IMAGES_PLUGIN_V3, ['snapshotter'], 'snapshotter');
    const stale = setting(CRI_PLUGIN_V2, ['sandbox_image'], 'sandbox_image');
    if (stale)
      notes.push(
        `${stale.where} is ignored in a version ${effective} config (containerd 2.x reads pinned_images.sandbox under [plugins."${CRI_IMAGES_PLUGIN_V3}"])`,
      );
  } else {
    sandboxImage = setting(CRI_PLUGIN_V2, ['sandbox_image'], 'sandbox_image');
    configPath = setting(CRI_PLUGIN_V2, ['registry', 'config_path'], 'registry.config_path');
    snapshotter = setting(CRI_PLUGIN_V2, ['containerd', 'snapshotter'], 'containerd.snapshotter');
    if (plugins.has(CRI_IMAGES_PLUGIN_V3))
      notes.push(
        `[plugins."${CRI_IMAGES_PLUGIN_V3}"] is a version 3 section but the config is version ${effective}: set version = 3 (containerd 2.x) or use [plugins."${CRI_PLUGIN_V2}"]`,
      );
  }
  const dflt = (k: keyof typeof CONTAINERD_DEFAULTS): Found<string> => ({
    value: CONTAINERD_DEFAULTS[k],
    where: `containerd's default ${k === 'address' ? '[grpc] address' : k}`,
  });
  return {
    file,
    files: layers.map((l) => l.file),
    version: effective,
    root: top.root ?? dflt('root'),
    state: top.state ?? dflt('state'),
    address: address ?? dflt('address'),
    ...(sandboxImage ? { sandboxImage } : {}),
    ...(configPath ? { configPath } : {}),
    ...(snapshotter ? { snapshotter } : {}),
    criDisabled: disabled.some((d) => CRI_PLUGIN_IDS.includes(d)),
    notes,
  };
}
