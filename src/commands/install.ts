/**
 * `install`: puts the shipped systemd units (the package's systemd/ folder) into a root, typically
 * a node image being built, and enables them by creating the `.wants/` symlinks itself, as
 * `systemctl enable` would: no systemctl, no running systemd, works in a chroot. Idempotent: a
 * second run changes nothing and says so. Only node:fs and node:path.
 *
 * Three ways in (--mode), each undoing what the others set up, so switching is one command:
 *   standalone  node-bootstrap.service runs the boot (images without nodeadm);
 *   nodeadm     node-bootstrap takes nodeadm-run.service's slot (systemd/opt-in/ drop-in);
 *   observe     node-bootstrap-observe.service reports after nodeadm-run, and kubelet is not gated.
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
import { STARTUP_CACHE_DIR } from '../payload.js';
import { writeStartupCache } from './startup-cache.js';

/** Where systemd looks for units, relative to the root (the ones a nodeadm-run.service may be in). */
const UNIT_HOMES = ['etc/systemd/system', 'usr/lib/systemd/system', 'lib/systemd/system'];
/** Where unit files go, relative to the root. */
export const UNIT_DIR = 'etc/systemd/system';
/** The binary the shipped units name; `--bin` replaces it. */
export const DEFAULT_BIN = '/usr/bin/node-bootstrap';
/** Enabled by the default mode: the boot run and the guard timer. prefetch is installed, not enabled. */
export const ENABLED_UNITS = ['node-bootstrap.service', 'node-bootstrap-guard.timer'] as const;

export const MODES = ['standalone', 'nodeadm', 'observe'] as const;
export type Mode = (typeof MODES)[number];

/** The takeover drop-in: shipped under systemd/opt-in/ so that no package activates it by itself. */
export const NODEADM_DROP_IN = 'nodeadm-run.service.d/10-node-bootstrap.conf';
const OPT_IN = 'opt-in';
const KUBELET_GATE = 'kubelet.service.d/10-node-bootstrap.conf';

/** What each mode enables and disables, and whether kubelet is gated and nodeadm-run taken over. */
export const MODE_UNITS: Record<
  Mode,
  { enable: string[]; disable: string[]; gate: boolean; nodeadm: boolean }
> = {
  standalone: {
    enable: [...ENABLED_UNITS],
    disable: ['node-bootstrap-observe.service'],
    gate: true,
    nodeadm: false,
  },
  nodeadm: {
    enable: ['node-bootstrap-guard.timer'],
    disable: ['node-bootstrap.service', 'node-bootstrap-observe.service'],
    gate: true,
    nodeadm: true,
  },
  observe: {
    enable: ['node-bootstrap-observe.service'],
    disable: ['node-bootstrap.service', 'node-bootstrap-guard.timer'],
    gate: false,
    nodeadm: false,
  },
};

/**
 * In observe mode kubelet must not be gated (nothing opens the gate): this file takes the gate's
 * name, so it also overrides a gate drop-in a package put in /usr/lib/systemd/system (a drop-in in
 * /etc wins over one of the same name in the vendor directory).
 */
export const NO_GATE = [
  '# Installed by `node-bootstrap install --mode observe`: node-bootstrap only observes this node,',
  "# so kubelet is NOT gated on /run/node-bootstrap/gates-passed. This file has the gate drop-in's name",
  '# so that it also overrides a copy of the gate in /usr/lib/systemd/system/kubelet.service.d/.',
  '# `node-bootstrap install --mode standalone` or `--mode nodeadm` puts the gate back.',
  '',
].join('\n');

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
  mode: Mode;
  files: InstallFile[];
  links: InstallLink[];
  /** Relative to the root: what another mode installed and this one must not have (removed if present). */
  remove: string[];
}
export type Action = 'wrote' | 'unchanged' | 'linked' | 'relinked' | 'removed';
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

/**
 * What the package ships, as it should be in the root for `mode`: every unit and every
 * `<unit>.d/*.conf`, the opt-in nodeadm-run drop-in in nodeadm mode, the links of the units the
 * mode enables, and the links and drop-ins of the other modes to remove.
 */
export function planInstall(unitsDir: string, bin = DEFAULT_BIN, mode: Mode = 'standalone'): InstallPlan {
  const m = MODE_UNITS[mode];
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
        const rel = `${entry.name}/${conf}`;
        const content =
          rel === KUBELET_GATE && !m.gate
            ? NO_GATE
            : rewriteBin(readFileSync(join(unitsDir, entry.name, conf), 'utf8'), bin);
        files.push({ path: `${UNIT_DIR}/${rel}`, content });
      }
    }
  }
  const remove: string[] = [];
  if (m.nodeadm) {
    const src = join(unitsDir, OPT_IN, NODEADM_DROP_IN);
    if (!existsSync(src)) throw new BootError('INTERNAL', `${src} is missing from the package`);
    const content = rewriteBin(readFileSync(src, 'utf8'), bin);
    files.push({ path: `${UNIT_DIR}/${NODEADM_DROP_IN}`, content });
  } else remove.push(`${UNIT_DIR}/${NODEADM_DROP_IN}`);

  const targetsOf = (unit: string): string[] => {
    const file = files.find((f) => f.path === `${UNIT_DIR}/${unit}`);
    if (!file) throw new BootError('INTERNAL', `${unit} is missing from ${unitsDir}`);
    const targets = wantedBy(file.content);
    if (targets.length === 0) throw new BootError('INTERNAL', `${unit} has no [Install] WantedBy=`);
    return targets;
  };
  const links: InstallLink[] = [];
  for (const unit of m.enable)
    for (const t of targetsOf(unit))
      links.push({ path: `${UNIT_DIR}/${t}.wants/${unit}`, target: `/${UNIT_DIR}/${unit}` });
  for (const unit of m.disable)
    for (const t of targetsOf(unit)) remove.push(`${UNIT_DIR}/${t}.wants/${unit}`);
  return { mode, files, links, remove };
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

  for (const p of plan.remove) {
    if (lstatOrUndefined(join(root, p))?.isDirectory()) {
      throw new BootError('CONFIG_INVALID', `/${p} is a directory in ${root}`, {
        hint: 'remove it: node-bootstrap installs a file or a symlink there',
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
  for (const p of plan.remove) {
    const dest = join(root, p);
    try {
      if (!lstatOrUndefined(dest)) continue;
      rmSync(dest);
      done.push({ path: p, action: 'removed' });
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
  const mode = (v.mode as string | undefined) ?? 'standalone';
  if (!(MODES as readonly string[]).includes(mode))
    throw new BootError('USAGE', `--mode ${JSON.stringify(mode)}: expected one of ${MODES.join(', ')}`, {
      hint: "standalone: node-bootstrap.service runs the boot; nodeadm: it takes nodeadm-run.service's slot; observe: it only reports, after nodeadm-run",
    });
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
  const plan = planInstall(unitsDir, bin, mode as Mode);
  const done = applyInstall(root, plan);
  let cache: Awaited<ReturnType<typeof writeStartupCache>>;
  try {
    cache = await writeStartupCache(root);
  } catch (err) {
    throw err instanceof BootError ? err : unwritable(join(root, 'var/cache/node-bootstrap'), err);
  }
  done.push(...cache.done);

  const out = [`node-bootstrap install --mode ${mode}: ${unitsDir} → ${root}`];
  for (const d of done) out.push(`  ${d.action.padEnd(9)}  /${d.path}${d.target ? ` → ${d.target}` : ''}`);
  const changed = done.filter((d) => d.action !== 'unchanged').length;
  if (changed === 0) out.push('nothing to do: everything was already installed and enabled');
  else {
    out.push(`${changed} change(s); enabled: ${MODE_UNITS[plan.mode].enable.join(', ')}`);
    if (root === '/') out.push('run `systemctl daemon-reload` to load them into the running systemd');
  }
  out.push(
    cache.skipped
      ? `startup cache: skipped (${cache.skipped})`
      : `startup cache: /${STARTUP_CACHE_DIR.slice(1)} (V8 ${process.versions.v8} code caches, ${cache.trained ? `trained on: ${cache.trained}` : 'kept: V8 takes them'})`,
  );
  if (plan.mode === 'nodeadm' && !UNIT_HOMES.some((d) => existsSync(join(root, d, 'nodeadm-run.service'))))
    out.push(
      `warning: ${root} has no nodeadm-run.service: the drop-in takes effect once nodeadm is installed`,
    );
  if (!existsSync(join(root, bin)))
    out.push(`warning: ${join(root, bin)} does not exist (yet): ExecStart= names it`);
  process.stdout.write(`${out.join('\n')}\n`);
  return EXIT.ok;
}
