/**
 * systemd unit files as systemd itself loads them, read through a FileReader: the unit file by
 * search-path precedence, its `<unit>.d/*.conf` drop-ins, list settings with "an empty assignment
 * resets", Environment=/EnvironmentFile= and ExecStart= with systemd's quoting and `$VAR` expansion.
 * Pure over what the reader returns; only what node-bootstrap needs (no specifiers, no templates).
 */
import type { FileReader } from './file-reader.js';

/** System unit search path, highest precedence first (systemd.unit(5)). */
export const UNIT_DIRS = [
  '/etc/systemd/system',
  '/run/systemd/system',
  '/usr/local/lib/systemd/system',
  '/usr/lib/systemd/system',
  '/lib/systemd/system',
] as const;

export interface UnitDirective {
  section: string;
  key: string;
  value: string;
  /** The file (unit or drop-in) that sets it. */
  file: string;
}

/** Directives in file order. Comments (# ;), blank lines, backslash continuations, [Section] headers. */
export function parseUnitFile(text: string, file: string): UnitDirective[] {
  const out: UnitDirective[] = [];
  let section = '';
  let pending = '';
  for (const raw of text.split(/\r?\n/)) {
    const line = pending ? raw : raw.trimStart();
    if (!pending && (line === '' || line.startsWith('#') || line.startsWith(';'))) continue;
    if (pending && /^\s*[#;]/.test(raw)) continue; // comment lines inside a continuation are skipped
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    const header = /^\[([^\]]+)\]$/.exec(full);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = full.indexOf('=');
    if (eq <= 0) continue;
    out.push({ section, key: full.slice(0, eq).trim(), value: full.slice(eq + 1).trim(), file });
  }
  if (pending.trim()) {
    const full = pending.trim();
    const eq = full.indexOf('=');
    if (eq > 0) out.push({ section, key: full.slice(0, eq).trim(), value: full.slice(eq + 1).trim(), file });
  }
  return out;
}

export interface LoadedUnit {
  name: string;
  /** The unit file systemd loads (first in search-path order); undefined when there is none. */
  file?: string;
  /** Where the unit file's symlinks lead (differs from `file` for links). */
  resolved?: string;
  /** Linked to /dev/null or empty: systemd will not load it. */
  masked: boolean;
  /** Drop-ins in the order systemd applies them (by file name; a name in a higher directory wins). */
  dropIns: string[];
  /** Unit file directives, then every drop-in's, in order. */
  directives: UnitDirective[];
  /** Files that exist but could not be read. */
  unreadable: { file: string; code: string }[];
}

export interface LoadUnitOptions {
  dirs?: readonly string[];
  /** Drop-in file names to leave out (node-bootstrap's own, when judging what the operator set). */
  ignoreDropIns?: readonly string[];
}

export function loadUnit(reader: FileReader, name: string, opts: LoadUnitOptions = {}): LoadedUnit {
  const dirs = opts.dirs ?? UNIT_DIRS;
  const unit: LoadedUnit = { name, masked: false, dropIns: [], directives: [], unreadable: [] };
  for (const dir of dirs) {
    const path = `${dir}/${name}`;
    const c = reader.read(path);
    if (!c.ok && c.code === 'ENOENT' && c.resolved === undefined) continue;
    unit.file = path;
    if (!c.ok) {
      // A link to /dev/null reads as a character device: masked.
      if (c.resolved === '/dev/null') unit.masked = true;
      else unit.unreadable.push({ file: path, code: c.code });
      unit.resolved = c.resolved;
      break;
    }
    unit.resolved = c.resolved;
    if (c.resolved === '/dev/null' || c.text.trim() === '') unit.masked = true;
    else unit.directives.push(...parseUnitFile(c.text, path));
    break;
  }
  const byName = new Map<string, string>();
  for (const dir of dirs) {
    const d = `${dir}/${name}.d`;
    for (const f of reader.list(d) ?? []) {
      if (!f.endsWith('.conf') || byName.has(f) || opts.ignoreDropIns?.includes(f)) continue;
      byName.set(f, `${d}/${f}`);
    }
  }
  for (const f of [...byName.keys()].sort()) {
    const path = byName.get(f)!;
    const c = reader.read(path);
    if (!c.ok) {
      if (c.resolved !== '/dev/null') unit.unreadable.push({ file: path, code: c.code });
      continue;
    }
    unit.dropIns.push(path);
    unit.directives.push(...parseUnitFile(c.text, path));
  }
  return unit;
}

/** A list setting (After=, Environment=, ExecStart=, …): assignments accumulate, an empty one resets. */
export function listSetting(u: LoadedUnit, section: string, key: string): UnitDirective[] {
  let out: UnitDirective[] = [];
  for (const d of u.directives) {
    if (d.section !== section || d.key !== key) continue;
    if (d.value === '') out = [];
    else out.push(d);
  }
  return out;
}

/** A single-value setting (Type=): the last assignment wins. */
export function lastSetting(u: LoadedUnit, section: string, key: string): UnitDirective | undefined {
  return listSetting(u, section, key).at(-1);
}

/** Unit names listed by a dependency setting (After=a.service b.service, over several lines). */
export function unitNames(u: LoadedUnit, section: string, key: string): { name: string; file: string }[] {
  return listSetting(u, section, key).flatMap((d) =>
    d.value
      .split(/\s+/)
      .filter(Boolean)
      .map((name) => ({ name, file: d.file })),
  );
}

const SIMPLE_ESCAPES: Record<string, string> = {
  n: '\n',
  t: '\t',
  r: '\r',
  a: '\x07',
  b: '\b',
  f: '\f',
  v: '\v',
};

/**
 * systemd's word splitting (ExecStart=, Environment=): whitespace separates words; "double" and
 * 'single' quotes group; backslash escapes (C-style inside quotes).
 */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && i + 1 < text.length) {
        const next = text[++i]!;
        cur += SIMPLE_ESCAPES[next] ?? next;
      } else cur += ch;
      continue;
    }
    if (/\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (ch === '"' || ch === "'") quote = ch;
    else if (ch === '\\' && i + 1 < text.length) cur += text[++i];
    else cur += ch;
  }
  if (inWord) words.push(cur);
  return words;
}

/** Where an environment variable's value came from (for messages that say what to edit). */
export interface EnvValue {
  value: string;
  /** The unit file (Environment=) or environment file (EnvironmentFile=) that set it. */
  file: string;
}

/**
 * systemd's EnvironmentFile= format: KEY=VALUE lines, # and ; comments, optional quotes (escapes in
 * double quotes), backslash-newline continuations. Lines that are not assignments are ignored, as
 * systemd does.
 */
export function parseEnvironmentFile(text: string): Map<string, string> {
  const env = new Map<string, string>();
  const joined = text.replace(/\\\r?\n/g, '');
  for (const raw of joined.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) continue;
    let value = line.slice(eq + 1).trim();
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) {
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\(["\\`$])/g, '$1');
    }
    env.set(key, value);
  }
  return env;
}

export interface UnitEnvironment {
  vars: Map<string, EnvValue>;
  /** EnvironmentFile= entries in order: path, whether optional (`-`), whether it was read. */
  files: { path: string; optional: boolean; read: boolean; code?: string }[];
}

/** Environment= assignments, then EnvironmentFile= files (which override Environment=, later files win). */
export function unitEnvironment(reader: FileReader, u: LoadedUnit): UnitEnvironment {
  const vars = new Map<string, EnvValue>();
  for (const d of listSetting(u, 'Service', 'Environment'))
    for (const w of splitWords(d.value)) {
      const eq = w.indexOf('=');
      if (eq > 0) vars.set(w.slice(0, eq), { value: w.slice(eq + 1), file: d.file });
    }
  const files: UnitEnvironment['files'] = [];
  for (const d of listSetting(u, 'Service', 'EnvironmentFile')) {
    const optional = d.value.startsWith('-');
    const path = optional ? d.value.slice(1) : d.value;
    const c = reader.read(path);
    files.push({ path, optional, read: c.ok, ...(c.ok ? {} : { code: c.code }) });
    if (!c.ok) continue;
    for (const [k, v] of parseEnvironmentFile(c.text)) vars.set(k, { value: v, file: path });
  }
  return { vars, files };
}

/** One argument of a command line and where it came from (the unit file, or a variable and its file). */
export interface Arg {
  value: string;
  origin: string;
}

const WHOLE_VAR = /^\$([A-Za-z_][A-Za-z0-9_]*)$/;
const EMBEDDED_VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g;

/**
 * The last ExecStart= of a unit as argv, `$VAR` words split at whitespace and `${VAR}` substituted
 * in place (systemd.service(5) "Command lines"). Prefixes (@ - : + !) are dropped.
 */
export function execStart(
  u: LoadedUnit,
  env: Map<string, EnvValue>,
): { argv: Arg[]; file: string; vars: string[] } | undefined {
  const d = listSetting(u, 'Service', 'ExecStart').at(-1);
  if (!d) return undefined;
  const words = splitWords(d.value);
  if (words[0]) words[0] = words[0].replace(/^[@\-:+!]+/, '');
  const argv: Arg[] = [];
  const vars: string[] = [];
  for (const w of words) {
    const whole = WHOLE_VAR.exec(w);
    if (whole) {
      const name = whole[1]!;
      vars.push(name);
      const v = env.get(name);
      if (v)
        for (const part of v.value.split(/\s+/).filter(Boolean))
          argv.push({ value: part, origin: `$${name} (${v.file})` });
      continue;
    }
    let origin = `ExecStart (${d.file})`;
    const value = w.replace(EMBEDDED_VAR, (_m, braced?: string, bare?: string) => {
      const name = (braced ?? bare)!;
      vars.push(name);
      const v = env.get(name);
      if (v) origin = `$${name} (${v.file})`;
      return v?.value ?? '';
    });
    argv.push({ value, origin });
  }
  return { argv, file: d.file, vars };
}
