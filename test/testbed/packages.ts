/**
 * The packages as `npm run package` makes them (scripts/package.mjs), built into a private folder
 * under dist/ so that test files running side by side never share one, plus what they must hold.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '..', '..');

export interface Packages {
  dir: string;
  version: string;
  tarball: string;
  rpm: string;
  deb: string;
}

/** Runs scripts/package.mjs --out dist/.pkg-<label>-XXXX (needs dist/node-bootstrap.mjs). */
export async function buildPackages(label: string): Promise<Packages> {
  const dir = await mkdtemp(join(REPO, 'dist', `.pkg-${label}-`));
  await new Promise<void>((resolve, reject) =>
    execFile(
      process.execPath,
      [join(REPO, 'scripts', 'package.mjs'), '--out', dir],
      { cwd: REPO, timeout: 120_000 },
      (err, _out, stderr) =>
        err ? reject(new Error(`package.mjs failed: ${stderr || err.message}`)) : resolve(),
    ),
  );
  const version = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string;
  const find = (re: RegExp) => {
    const f = readdirSync(dir).find((n) => re.test(n));
    if (!f) throw new Error(`package.mjs made no ${re} in ${dir}`);
    return join(dir, f);
  };
  return {
    dir,
    version,
    tarball: find(/^node-bootstrap-.*-linux-x64\.tar\.gz$/),
    rpm: find(/\.noarch\.rpm$/),
    deb: find(/_all\.deb$/),
  };
}

/**
 * Every regular file the packages install, with its mode: the bundle and its launcher, the sample
 * config, systemd/ next to the bundle, and its units and drop-ins in systemd's vendor directory.
 */
export function expectedFiles(): Map<string, number> {
  const out = new Map<string, number>([
    ['/usr/bin/node-bootstrap', 0o755],
    ['/usr/lib/node-bootstrap/node-bootstrap.mjs', 0o755],
    ['/etc/node-bootstrap/config.yaml', 0o644],
  ]);
  const units = join(REPO, 'systemd');
  // systemd/ whole (opt-in/ included) next to the bundle; its units, and no drop-in, also in
  // systemd's vendor directory (kubelet's gate only through `install --mode`).
  const walk = (rel: string) => {
    for (const e of readdirSync(join(units, rel), { withFileTypes: true })) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(r);
      else out.set(`/usr/lib/node-bootstrap/systemd${r}`, 0o644);
    }
  };
  walk('');
  for (const e of readdirSync(units, { withFileTypes: true })) {
    if (e.isFile() && /\.(service|timer|socket|path)$/.test(e.name))
      out.set(`/usr/lib/systemd/system/${e.name}`, 0o644);
  }
  return out;
}
