/**
 * `npm run package` (scripts/package.mjs): the tarball, the RPM and the deb carry the same files
 * with the same modes; each installs into an empty root with its own package manager (dpkg --root,
 * rpm --root) or tar; the installed launcher runs from there; the installed units pass
 * `systemd-analyze verify` in that root; and the installed node-bootstrap, in a root far from the
 * repository (no node_modules, no proto/ above it), runs the boot phases against a real containerd,
 * registry, ECR API and IMDS. The packages in a booted systemd: test/e2e/al2023.test.ts.
 */
import { execFile } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestbed } from '../testbed/index.js';
import { buildPackages, expectedFiles, type Packages } from '../testbed/packages.js';
import { ensureBuilt, SKIP } from './lib/run-bundle.js';

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}
/** Asynchronous: the testbed's emulators answer from this process. */
const sh = (cmd: string, args: string[], env?: Record<string, string>): Promise<Out> =>
  new Promise((resolve) =>
    execFile(
      cmd,
      args,
      {
        env: env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' },
        maxBuffer: 64 << 20,
        timeout: 60_000,
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    ),
  );
const ok = async (cmd: string, args: string[], env?: Record<string, string>): Promise<string> => {
  const r = await sh(cmd, args, env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
};

/** `-rwxr-xr-x root/root ... ./usr/bin/x` lines (tar -tv, dpkg-deb -c) → regular files and modes. */
function parseListing(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = line.match(/^-([rwxsStT-]{9})\s+(\S+)\s.*?\s\.(\/\S+)$/);
    if (m) out.set(m[3]!, permsToMode(m[1]!));
  }
  return out;
}
const permsToMode = (p: string): number =>
  [...p].reduce((n, ch, i) => n | (ch === '-' ? 0 : 1 << (8 - i)), 0);

/** Regular files under a root and their modes, as installed. */
function installedFiles(root: string, skip: RegExp): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (dir: string) => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (skip.test(p)) continue;
      if (e.isDirectory()) walk(p);
      else out.set(p, statSync(join(root, p)).mode & 0o7777);
    }
  };
  walk('');
  return out;
}

const cleanEnv = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };
const octal = (m: Map<string, number>) => Object.fromEntries([...m].map(([k, v]) => [k, v.toString(8)]));

let pkgs: Packages;
const roots: string[] = [];
/** An empty root far from the repository: nothing of node_modules or proto/ above it. */
const emptyRoot = (label: string): string => {
  const r = mkdtempSync(join(tmpdir(), `nb-pkg-${label}-`));
  roots.push(r);
  return r;
};
const report: string[] = [];

beforeAll(async () => {
  await ensureBuilt();
  pkgs = await buildPackages('it');
}, 180_000);

afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
  if (pkgs) rmSync(pkgs.dir, { recursive: true, force: true });
  if (report.length) console.log(`packages:\n${report.map((l) => `  ${l}`).join('\n')}`);
});

describe('npm run package', () => {
  it('tarball, RPM and deb carry the same files and modes; metadata, checksums, scripts', async () => {
    const expected = octal(expectedFiles());
    const tar = parseListing(await ok('tar', ['-tvzf', pkgs.tarball]));
    const deb = parseListing(await ok('dpkg-deb', ['-c', pkgs.deb]));
    const rpmList = await ok('rpm', ['-qp', '--qf', '[%{FILEMODES:perms} %{FILENAMES}\n]', pkgs.rpm]);
    const rpm = new Map<string, number>();
    for (const line of rpmList.trim().split('\n')) {
      const [perms, path] = line.split(' ');
      if (perms!.startsWith('-')) rpm.set(path!, permsToMode(perms!.slice(1)));
    }
    expect(octal(tar)).toEqual(expected);
    expect(octal(deb)).toEqual(expected);
    expect(octal(rpm)).toEqual(expected);
    // The tarball holds no entry for a directory that is not the package's own (tar -C / leaves them be).
    const tarDirs = (await ok('tar', ['-tzf', pkgs.tarball])).split('\n').filter((p) => p.endsWith('/'));
    expect(tarDirs.sort()).toEqual(
      [
        './etc/node-bootstrap/',
        './etc/node-bootstrap/config.d/',
        './usr/lib/node-bootstrap/',
        './usr/lib/node-bootstrap/systemd/',
        ...readdirSync('systemd', { recursive: true, withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => `./usr/lib/node-bootstrap/${join(d.parentPath, d.name)}/`),
      ].sort(),
    );
    // Checksums: the .sha256 beside the tarball and SHA256SUMS for all three.
    const check = await sh('sh', [
      '-c',
      `cd "${pkgs.dir}" && sha256sum --strict -c SHA256SUMS && sha256sum --strict -c *.tar.gz.sha256`,
    ]);
    expect(check.stdout, check.stderr).toMatch(
      /linux-x64\.tar\.gz: OK[\s\S]*noarch\.rpm: OK[\s\S]*_all\.deb: OK/,
    );

    // The runtime: Node.js >= 20, named the way each distribution packages it.
    const debField = (f: string) => ok('dpkg-deb', ['-f', pkgs.deb, f]).then((s) => s.trim());
    expect(await debField('Depends')).toBe('nodejs (>= 20)');
    expect(await debField('Architecture')).toBe('all');
    expect(await debField('Version')).toBe(`${pkgs.version}-1`);
    const requires = (await ok('rpm', ['-qp', '--requires', pkgs.rpm])).split('\n');
    expect(requires).toContain('(nodejs20 or nodejs22 or nodejs24)');
    expect((await ok('rpm', ['-qp', '--qf', '%{ARCH} %{VERSION}', pkgs.rpm])).trim()).toBe(
      `noarch ${pkgs.version}`,
    );
    // The sample config is a config file to both package managers (kept when the admin edited it).
    expect((await ok('rpm', ['-qpc', pkgs.rpm])).trim()).toBe('/etc/node-bootstrap/config.yaml');
    const ctl = mkdtempSync(join(pkgs.dir, 'ctl-'));
    await ok('dpkg-deb', ['-e', pkgs.deb, ctl]);
    expect(readFileSync(join(ctl, 'conffiles'), 'utf8').trim()).toBe('/etc/node-bootstrap/config.yaml');
    // The scripts: a daemon-reload only under a running systemd; nothing enabled, nothing from /tmp.
    const scripts = [
      readFileSync(join(ctl, 'postinst'), 'utf8'),
      readFileSync(join(ctl, 'postrm'), 'utf8'),
      await ok('rpm', ['-qp', '--scripts', pkgs.rpm]),
    ];
    for (const s of scripts) {
      expect(s).toMatch(/if \[ -d \/run\/systemd\/system \]; then\s+systemctl daemon-reload/);
      expect(s).not.toMatch(/\/tmp|TMPDIR|systemctl (enable|start|preset)/);
    }
    const size = (f: string) => `${(statSync(f).size / 1024).toFixed(0)} KiB`;
    report.push(
      `sizes: tarball ${size(pkgs.tarball)}, rpm ${size(pkgs.rpm)}, deb ${size(pkgs.deb)}; bundle ${size('dist/node-bootstrap.mjs')}`,
    );
  });

  it('packing the same bundle again gives byte-identical packages', async () => {
    const again = await buildPackages('it-again');
    try {
      const sums = (dir: string) => readFileSync(join(dir, 'SHA256SUMS'), 'utf8');
      expect(sums(again.dir)).toBe(sums(pkgs.dir));
      expect(sums(pkgs.dir).trim().split('\n')).toHaveLength(3);
    } finally {
      rmSync(again.dir, { recursive: true, force: true });
    }
  });

  it('deb into an empty root (dpkg --root): file list, modes, the launcher runs; remove keeps the edited config, purge removes it', async () => {
    const root = emptyRoot('deb');
    mkdirSync(join(root, 'var/lib/dpkg/info'), { recursive: true });
    mkdirSync(join(root, 'var/lib/dpkg/updates'));
    cpSync('/dev/null', join(root, 'var/lib/dpkg/status'));
    const dpkg = (...a: string[]) =>
      ok('dpkg', [`--root=${root}`, '--force-script-chrootless', ...a], cleanEnv);
    // --force-depends: the empty root has no nodejs package; the host's node runs the launcher.
    await dpkg('--force-depends', '-i', pkgs.deb);
    const listed = (await dpkg('-L', 'node-bootstrap'))
      .split('\n')
      .filter((p) => existsSync(join(root, p)) && statSync(join(root, p)).isFile());
    expect(listed.sort()).toEqual([...expectedFiles().keys()].sort());
    expect(octal(installedFiles(root, /^\/var\/lib\/dpkg|^\/var\/log/))).toEqual(octal(expectedFiles()));
    const version = await ok(join(root, 'usr/bin/node-bootstrap'), ['--version'], cleanEnv);
    expect(version.trim()).toBe(pkgs.version);

    // An admin's edit of the config survives `remove` (a conffile) and goes with `purge`.
    const conf = join(root, 'etc/node-bootstrap/config.yaml');
    cpSync('/dev/null', conf);
    await dpkg('-r', 'node-bootstrap');
    expect(existsSync(join(root, 'usr/bin/node-bootstrap'))).toBe(false);
    expect(readFileSync(conf, 'utf8')).toBe('');
    await dpkg('--purge', 'node-bootstrap');
    expect(existsSync(conf)).toBe(false);
    expect([...installedFiles(root, /^\/var\/lib\/dpkg|^\/var\/log/).keys()]).toEqual([]);
  });

  it('RPM into an empty root (rpm --root): rpm -V clean, file list, modes, the launcher runs', async () => {
    const root = emptyRoot('rpm');
    const rpm = (...a: string[]) => ok('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', ...a], cleanEnv);
    await rpm('--initdb');
    // --nodeps: no nodejs package in the empty root. --noscripts: rpm runs scriptlets chrooted, and
    // the empty root has no /bin/sh (the e2e test installs it with its scriptlet in a booted systemd).
    await rpm('--nodeps', '--noscripts', '-i', pkgs.rpm);
    const verify = await sh(
      'rpm',
      ['--root', root, '--dbpath', '/var/lib/rpm', '-V', '--nodeps', 'node-bootstrap'],
      cleanEnv,
    );
    expect(verify.stdout + verify.stderr).toBe('');
    expect(verify.code).toBe(0);
    const files = (await rpm('-ql', 'node-bootstrap'))
      .split('\n')
      .filter((p) => p && statSync(join(root, p)).isFile());
    expect(files.sort()).toEqual([...expectedFiles().keys()].sort());
    expect(octal(installedFiles(root, /^\/var\/lib\/rpm/))).toEqual(octal(expectedFiles()));
    expect((await ok(join(root, 'usr/bin/node-bootstrap'), ['--version'], cleanEnv)).trim()).toBe(
      pkgs.version,
    );
    // rpm -V notices a changed file: the check above can fail.
    cpSync('/dev/null', join(root, 'usr/lib/systemd/system/node-bootstrap.service'));
    const changed = await sh(
      'rpm',
      ['--root', root, '--dbpath', '/var/lib/rpm', '-V', '--nodeps', 'node-bootstrap'],
      cleanEnv,
    );
    expect(changed.stdout).toMatch(/^S.5.*\/usr\/lib\/systemd\/system\/node-bootstrap\.service$/m);
  });

  it('the installed units pass systemd-analyze verify in the root (and fail it without the binary)', async () => {
    const root = emptyRoot('verify');
    await ok('tar', ['-xzf', pkgs.tarball, '-C', root]);
    // What a node image has from systemd itself: its targets and slices.
    const sd = '/usr/lib/systemd/system';
    for (const f of readdirSync(sd).filter((n) => /\.(target|slice)$/.test(n)))
      cpSync(join(sd, f), join(root, sd, f), { dereference: true });
    // A kubelet.service for the gate drop-in to attach to.
    cpSync(join(import.meta.dirname, 'fixtures', 'kubelet.service'), join(root, sd, 'kubelet.service'));
    mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
    cpSync('/bin/true', join(root, 'usr/local/bin/kubelet'));
    const units = readdirSync(join(root, sd)).filter(
      (u) => u.startsWith('node-bootstrap') || u === 'kubelet.service',
    );
    // The package alone gates nothing: no drop-in for kubelet in the vendor directory.
    expect(existsSync(join(root, sd, 'kubelet.service.d'))).toBe(false);
    const v = await sh('systemd-analyze', ['verify', `--root=${root}`, ...units], cleanEnv);
    expect(v.stderr + v.stdout).toBe('');
    expect(v.code).toBe(0);
    // The image build's choice puts the gate in place; verify reads it: a broken line is reported.
    await ok(
      join(root, 'usr/bin/node-bootstrap'),
      ['install', '--mode', 'standalone', '--root', root],
      cleanEnv,
    );
    const gate = join(root, 'etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf');
    expect(readFileSync(gate, 'utf8')).toContain('AssertPathExists=/run/node-bootstrap/gates-passed');
    const text = readFileSync(gate, 'utf8');
    writeFileSync(gate, `${text}\n[Unit]\nAssertPathExists=not/absolute\n`);
    const gated = await sh('systemd-analyze', ['verify', `--root=${root}`, 'kubelet.service'], cleanEnv);
    expect(gated.stderr).toMatch(/10-node-bootstrap\.conf:\d+: .*not absolute/);
    writeFileSync(gate, text);
    rmSync(join(root, 'usr/bin/node-bootstrap'));
    const broken = await sh(
      'systemd-analyze',
      ['verify', `--root=${root}`, 'node-bootstrap.service'],
      cleanEnv,
    );
    expect(broken.code).not.toBe(0);
    expect(broken.stderr).toMatch(/Command \/usr\/bin\/node-bootstrap is not executable/);
    report.push(`systemd-analyze verify --root: ${units.join(', ')}: clean`);
  });

  it('unpacked from the tarball far from the repository: run pulls and pins the pause image through real containerd; install finds its units', async () => {
    const root = emptyRoot('tar');
    await ok('tar', ['-xzf', pkgs.tarball, '-C', root]);
    const tb = await startTestbed({ containerd: { version: '1.7' } });
    try {
      const state = join(root, 'run/node-bootstrap');
      const bin = join(root, 'usr/bin/node-bootstrap');
      const r = await sh(
        bin,
        ['run', '--config', tb.configFile, '--skip', SKIP, '--state-dir', state],
        tb.env,
      );
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/^node-bootstrap: OK \d\/\d phases in \d+\.\d\ds/m);
      const status = JSON.parse(readFileSync(join(state, 'status.json'), 'utf8'));
      const pause = status.phases.find((p: { name: string }) => p.name === 'sandbox-image');
      expect(pause).toMatchObject({ result: 'ok', facts: expect.objectContaining({ pinned: true }) });
      // `install` finds systemd/ next to the bundle, through the launcher.
      const image = join(root, 'image');
      mkdirSync(image);
      const inst = await sh(bin, ['install', '--root', image], cleanEnv);
      expect(inst.code, inst.stderr).toBe(0);
      expect(inst.stdout).toContain(`${root}/usr/lib/node-bootstrap/systemd → ${image}`);
      expect(
        readlinkSync(join(image, 'etc/systemd/system/multi-user.target.wants/node-bootstrap.service')),
      ).toBe('/etc/systemd/system/node-bootstrap.service');
    } finally {
      await tb.stop();
    }
  });
});
