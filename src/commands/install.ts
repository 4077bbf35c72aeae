/**
 * `install`: puts the shipped systemd units (the package's systemd/ folder) into a root, typically
 * a node image being built, and enables node-bootstrap.service and the guard timer by creating the
 * `.wants/` symlinks itself, as `systemctl enable` would: no systemctl, no running systemd, works in
 * a chroot. Idempotent: a second run changes nothing and says so. Only node:fs and node:path.
 */
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { BootError, EXIT } from '../errors.js';

/** Where unit files go, relative to the root. */
export const UNIT_DIR = 'etc/systemd/system';
/** The binary the shipped units name; `--bin` replaces it. */
export const DEFAULT_BIN = '/usr/bin/node-bootstrap';
/** Enabled at install: the boot run and the guard timer. prefetch is installed, not enabled. */
export const ENABLED_UNITS = ['node-bootstrap.service', 'node-bootstrap-guard.timer'] as const;

type Values = Record<string, string | boolean | undefined>;

export interface InstallFile {
  /** Relative to the root, e.g. `etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf`. */
  path: string;
  content: string;
}
export interface InstallLink {
  /** Relative to the root, e.g. `etc/systemd/system/multi-user.target.wants/node-bootstrap.service`. */
  path: string;
  /** Absolute inside the root, as systemctl writes it: `/etc/systemd/system/node-bootstrap.service`. */
  target: string;
}
export interface InstallPlan {
  files: InstallFile[];
  links: InstallLink[];
}
export type Action = 'wrote' | 'unchanged' | 'linked' | 'relinked';
export interface Done {
  path: string;
  action: Action;
  /** For a symlink: where it points. */
  target?: string;
}

/**
 * The package's systemd/ folder: walk up from this module (src/commands/ in development, dist/ in
 * the bundle) and from the real path of the entry script (/usr/bin/node-bootstrap is a symlink).
 */
export function findUnitsDir(): string {
  const starts: string[] = [];
  if (typeof import.meta.url === 'string' && import.meta.url.startsWith('file:')) {
    starts.push(dirname(decodeURIComponent(new URL(import.meta.url).pathname)));
  }
  if (process.argv[1]) {
    try {
      starts.push(dirname(realpathSync(process.argv[1])));
    } catch {}
  }
  for (const start of starts) {
    for (let dir = start; ; dir = dirname(dir)) {
      if (existsSync(join(dir, 'systemd', 'node-bootstrap.service'))) return join(dir, 'systemd');
      if (dirname(dir) === dir) break;
    }
  }
  throw new BootError('INTERNAL', `systemd/node-bootstrap.service not found above ${starts.join(' or ')}`, {
    hint: 'the package is incomplete: install dist/ and systemd/ side by side (see the README)',
  });
}

/** `ExecStart=/usr/bin/node-bootstrap run` → `ExecStart=<bin> run` (any Exec*= line, any prefix). */
export function rewriteBin(unit: string, bin: string): string {
  if (bin === DEFAULT_BIN) return unit;
  return unit.replace(
    /^(Exec[A-Za-z]*=[-@:+!|]*)\/usr\/bin\/node-bootstrap(?=\s|$)/gm,
    (_, head) => head + bin,
  );
}

/** The targets of `[Install] WantedBy=` (what `systemctl enable` links the unit into). */
export function wantedBy(unit: string): string[] {
  let section = '';
  const out: string[] = [];
  for (const raw of unit.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) section = line;
    else if (section === '[Install]' && line.startsWith('WantedBy=')) {
      out.push(...line.slice('WantedBy='.length).split(/\s+/).filter(Boolean));
    }
  }
  return out;
}

/** What the package ships, as it should be in the root: every unit and every `<unit>.d/*.conf`. */
export function planInstall(unitsDir: string, bin = DEFAULT_BIN): InstallPlan {
  const files: InstallFile[] = [];
  for (const entry of readdirSync(unitsDir, { withFileTypes: true }).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    if (entry.isFile() && /\.(service|timer)$/.test(entry.name)) {
      const content = rewriteBin(readFileSync(join(unitsDir, entry.name), 'utf8'), bin);
      files.push({ path: `${UNIT_DIR}/${entry.name}`, content });
    } else if (entry.isDirectory() && entry.name.endsWith('.d')) {
      for (const conf of readdirSync(join(unitsDir, entry.name)).sort()) {
        if (!conf.endsWith('.conf')) continue;
        const content = readFileSync(join(unitsDir, entry.name, conf), 'utf8');
        files.push({ path: `${UNIT_DIR}/${entry.name}/${conf}`, content });
      }
    }
  }
  const links: InstallLink[] = [];
  for (const unit of ENABLED_UNITS) {
    const file = files.find((f) => f.path === `${UNIT_DIR}/${unit}`);
    if (!file) throw new BootError('INTERNAL', `${unit} is missing from ${unitsDir}`);
    const targets = wantedBy(file.content);
    if (targets.length === 0) throw new BootError('INTERNAL', `${unit} has no [Install] WantedBy=`);
    for (const t of targets)
      links.push({ path: `${UNIT_DIR}/${t}.wants/${unit}`, target: `/${UNIT_DIR}/${unit}` });
  }
  return { files, links };
}

const lstatOrUndefined = (p: string): Stats | undefined => {
  try {
    return lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
};

/** An fs failure under the root: the root is the input that is wrong (read-only, not ours). */
const unwritable = (path: string, err: unknown): BootError =>
  new BootError(
    'CONFIG_INVALID',
    `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    { hint: 'pass --root a writable directory (the image root, mounted read-write)', cause: err },
  );

/**
 * Checks everything first (nothing is written when a destination is masked or in the way), then
 * writes what differs. Files are replaced atomically (temp file + rename), mode 0644.
 */
export function applyInstall(root: string, plan: InstallPlan): Done[] {
  for (const f of plan.files) {
    const st = lstatOrUndefined(join(root, f.path));
    if (st?.isSymbolicLink() && readlinkSync(join(root, f.path)) === '/dev/null') {
      throw new BootError('CONFIG_INVALID', `/${f.path} is masked (a symlink to /dev/null) in ${root}`, {
        hint: `unmask it first (systemctl --root=${root} unmask ${f.path.split('/').pop()}), or leave it masked and do not install`,
      });
    }
    if (st?.isDirectory()) {
      throw new BootError('CONFIG_INVALID', `/${f.path} is a directory in ${root}`, {
        hint: 'remove it: a unit file belongs there',
      });
    }
  }
  for (const l of plan.links) {
    const st = lstatOrUndefined(join(root, l.path));
    if (st && !st.isSymbolicLink()) {
      throw new BootError('CONFIG_INVALID', `/${l.path} exists in ${root} and is not a symlink`, {
        hint: 'remove it: systemd enables a unit with a symlink there',
      });
    }
  }

  const done: Done[] = [];
  for (const f of plan.files) {
    const dest = join(root, f.path);
    try {
      const st = lstatOrUndefined(dest);
      if (st?.isFile() && (st.mode & 0o777) === 0o644 && readFileSync(dest, 'utf8') === f.content) {
        done.push({ path: f.path, action: 'unchanged' });
        continue;
      }
      mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
      const tmp = `${dest}.node-bootstrap-tmp`;
      writeFileSync(tmp, f.content, { mode: 0o644 });
      chmodSync(tmp, 0o644); // whatever the umask
      if (st?.isSymbolicLink()) rmSync(dest); // a link to another copy: replace the link, not its target
      renameSync(tmp, dest);
      done.push({ path: f.path, action: 'wrote' });
    } catch (err) {
      throw err instanceof BootError ? err : unwritable(dest, err);
    }
  }
  for (const l of plan.links) {
    const dest = join(root, l.path);
    try {
      const st = lstatOrUndefined(dest);
      if (st && readlinkSync(dest) === l.target) {
        done.push({ path: l.path, action: 'unchanged', target: l.target });
        continue;
      }
      mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
      if (st) rmSync(dest);
      symlinkSync(l.target, dest);
      done.push({ path: l.path, action: st ? 'relinked' : 'linked', target: l.target });
    } catch (err) {
      throw unwritable(dest, err);
    }
  }
  return done;
}

/** `--bin` ends up in ExecStart= verbatim: an absolute path systemd reads as one word. */
function checkBin(bin: string): void {
  if (!bin.startsWith('/') || /[\s"'\\$%;]/.test(bin)) {
    throw new BootError(
      'USAGE',
      `--bin ${JSON.stringify(bin)} must be an absolute path without spaces, quotes, \\, $, % or ;`,
      {
        hint: 'usage: node-bootstrap install [--root DIR] [--bin PATH]',
      },
    );
  }
}

export async function install(v: Values): Promise<number> {
  const bin = (v.bin as string | undefined) ?? DEFAULT_BIN;
  checkBin(bin);
  const root = resolve((v.root as string | undefined) ?? '/');
  let st: Stats | undefined;
  try {
    st = statSync(root);
  } catch {}
  if (!st?.isDirectory()) {
    throw new BootError('CONFIG_INVALID', `--root ${root} is not a directory`, {
      hint: 'pass --root the root of the image being built (it must exist)',
    });
  }
  const unitsDir = findUnitsDir();
  const done = applyInstall(root, planInstall(unitsDir, bin));

  const out = [`node-bootstrap install: ${unitsDir} → ${root}`];
  for (const d of done) out.push(`  ${d.action.padEnd(9)}  /${d.path}${d.target ? ` → ${d.target}` : ''}`);
  const changed = done.filter((d) => d.action !== 'unchanged').length;
  if (changed === 0) out.push('nothing to do: everything was already installed and enabled');
  else {
    out.push(`${changed} change(s); enabled: ${ENABLED_UNITS.join(', ')}`);
    if (root === '/') out.push('run `systemctl daemon-reload` to load them into the running systemd');
  }
  if (!existsSync(join(root, bin)))
    out.push(`warning: ${join(root, bin)} does not exist (yet): ExecStart= names it`);
  process.stdout.write(`${out.join('\n')}\n`);
  return EXIT.ok;
}
