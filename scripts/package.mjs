// `npm run package`: the built bundle and the units as packages an image build installs offline,
// into dist/pkg/:
//   node-bootstrap-<version>-linux-x64.tar.gz (+ .sha256)  the install tree, to unpack with `tar -C /`
//   node-bootstrap-<version>-1.noarch.rpm                   AL2023 (rpmbuild; Debian package `rpm`)
//   node-bootstrap_<version>_all.deb                        Ubuntu/Debian (dpkg-deb)
//   SHA256SUMS                                              all three
// The three carry the same files (the tree staged in dist/pkg/.build/root), so one file list and one
// install test cover them. Everything is built under dist/ (never /tmp: CIS images mount it noexec),
// with fixed owners and timestamps (SOURCE_DATE_EPOCH, else the last commit), so packing the same
// bundle again gives byte-identical packages (and the bundle itself is reproducible: no code cache).
//
// Needs dist/node-bootstrap.mjs (npm run build). The bundle is self-contained: protos, codecs and
// every dependency are inside it (scripts/build.mjs); it needs only Node.js >= 20 at run time.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..');
// --out DIR (tests build into a private folder): default dist/pkg.
const outAt = process.argv.indexOf('--out');
const OUT =
  outAt > 0 && process.argv[outAt + 1] ? resolve(process.argv[outAt + 1]) : join(REPO, 'dist', 'pkg');
const BUILD = join(OUT, '.build');
const ROOT = join(BUILD, 'root');
const BUNDLE = join(REPO, 'dist', 'node-bootstrap.mjs');

const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
const VERSION = pkg.version;
const RELEASE = '1';
const SUMMARY = 'Ordered, observable boot of a Kubernetes worker node: containerd, pause image, then kubelet';
const DESCRIPTION = [
  'node-bootstrap runs between containerd and kubelet at boot: it waits for containerd, its socket',
  'and CRI, ensures the pinned sandbox (pause) image, checks the resolv.conf kubelet hands to pods,',
  'and only then starts kubelet. Installs systemd units (node-bootstrap.service, a guard timer, a',
  'prefetch service) and drop-ins; it enables nothing itself.',
];
/** Node.js runtime the bundle needs (scripts/build.mjs targets node20). */
const RPM_REQUIRES = '(nodejs20 or nodejs22 or nodejs24)';
const DEB_DEPENDS = 'nodejs (>= 20)';

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) throw new Error(`package: ${cmd}: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`package: ${cmd} ${args.join(' ')} exited ${r.status}\n${r.stderr || r.stdout}`);
  return r.stdout;
}

function epoch() {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  const r = spawnSync('git', ['log', '-1', '--format=%ct'], { cwd: REPO, encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? Number(r.stdout.trim()) : Math.floor(Date.now() / 1000);
}

/**
 * The install tree, as paths inside the root. kind: file (mode), dir (owned by the package), or
 * config (a file the package manager keeps when the admin changed it).
 */
function layout() {
  const entries = [];
  const file = (path, src, mode = 0o644, kind = 'file') => entries.push({ path, src, mode, kind });
  const dir = (path) => entries.push({ path, mode: 0o755, kind: 'dir' });

  dir('/usr/lib/node-bootstrap');
  file('/usr/lib/node-bootstrap/node-bootstrap.mjs', BUNDLE, 0o755);
  file('/usr/bin/node-bootstrap', join(REPO, 'packaging', 'launcher.sh'), 0o755);
  dir('/etc/node-bootstrap');
  dir('/etc/node-bootstrap/config.d');
  file('/etc/node-bootstrap/config.yaml', join(REPO, 'packaging', 'config.yaml'), 0o644, 'config');

  // The units of systemd/ go into systemd's vendor directory; no drop-in does: kubelet's gate
  // blocks kubelet until node-bootstrap opens it, so it takes effect only when the image build
  // chooses a way in (`node-bootstrap install --mode standalone|nodeadm`), never merely because the
  // package is installed. The whole systemd/ tree (drop-ins and opt-in/ included) goes next to the
  // bundle, where `node-bootstrap install` finds it.
  const units = join(REPO, 'systemd');
  const walk = (rel) => {
    dir(`/usr/lib/node-bootstrap/systemd${rel}`);
    for (const e of readdirSync(join(units, rel), { withFileTypes: true })) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) file(`/usr/lib/node-bootstrap/systemd${r}`, join(units, r));
    }
  };
  walk('');
  for (const e of readdirSync(units, { withFileTypes: true })) {
    if (e.isFile() && /\.(service|timer|socket|path)$/.test(e.name))
      file(`/usr/lib/systemd/system/${e.name}`, join(units, e.name));
  }
  return entries.sort((a, b) => (a.path < b.path ? -1 : 1));
}

function stage(entries, mtime) {
  rmSync(ROOT, { recursive: true, force: true });
  for (const e of entries) {
    const dest = join(ROOT, e.path);
    if (e.kind === 'dir') mkdirSync(dest, { recursive: true });
    else {
      mkdirSync(join(dest, '..'), { recursive: true });
      cpSync(e.src, dest);
    }
    chmodSync(dest, e.mode);
  }
  // Every path in the tree (parents included) gets the same timestamp.
  const touch = (p) => {
    for (const n of readdirSync(p, { withFileTypes: true })) {
      if (n.isDirectory()) touch(join(p, n.name));
      utimesSync(join(p, n.name), mtime, mtime);
    }
  };
  touch(ROOT);
}

const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');
const md5 = (file) => createHash('md5').update(readFileSync(file)).digest('hex');

/**
 * The tarball: only the package's own files and directories (no entries for /usr, /etc, ... so
 * that `tar -C / -xzf` changes no existing directory's mode or time), owner root, sorted.
 */
function tarball(entries, mtime) {
  const name = `node-bootstrap-${VERSION}-linux-x64.tar.gz`;
  const out = join(OUT, name);
  const list = join(BUILD, 'tar.list');
  writeFileSync(list, `${entries.map((e) => `.${e.path}`).join('\n')}\n`);
  const tar = spawnSync(
    'tar',
    [
      '-C',
      ROOT,
      '--no-recursion',
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      `--mtime=@${mtime}`,
      '--format=gnu',
      '-T',
      list,
      '-cf',
      '-',
    ],
    { maxBuffer: 256 << 20 },
  );
  if (tar.status !== 0) throw new Error(`package: tar: ${tar.stderr}`);
  const gz = spawnSync('gzip', ['-9', '-n'], { input: tar.stdout, maxBuffer: 256 << 20 });
  if (gz.status !== 0) throw new Error(`package: gzip: ${gz.stderr}`);
  writeFileSync(out, gz.stdout);
  writeFileSync(`${out}.sha256`, `${sha256(out)}  ${name}\n`);
  return out;
}

const POSTINST = () => readFileSync(join(REPO, 'packaging', 'postinst.sh'), 'utf8');

function deb(entries, mtime) {
  const dir = join(BUILD, 'deb');
  rmSync(dir, { recursive: true, force: true });
  cpSync(ROOT, dir, { recursive: true, preserveTimestamps: true });
  const control = join(dir, 'DEBIAN');
  mkdirSync(control, { mode: 0o755 });
  const files = entries.filter((e) => e.kind !== 'dir');
  const sizeKiB = Math.ceil(files.reduce((n, e) => n + statSync(e.src).size, 0) / 1024);
  writeFileSync(
    join(control, 'control'),
    [
      'Package: node-bootstrap',
      `Version: ${VERSION}-${RELEASE}`,
      'Architecture: all',
      'Maintainer: node-bootstrap maintainers <node-bootstrap@localhost>',
      `Installed-Size: ${sizeKiB}`,
      `Depends: ${DEB_DEPENDS}`,
      'Recommends: systemd',
      'Section: admin',
      'Priority: optional',
      `Description: ${SUMMARY}`,
      ...DESCRIPTION.map((l) => ` ${l}`),
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(control, 'conffiles'),
    `${entries
      .filter((e) => e.kind === 'config')
      .map((e) => e.path)
      .join('\n')}\n`,
  );
  writeFileSync(
    join(control, 'md5sums'),
    `${files.map((e) => `${md5(e.src)}  ${e.path.slice(1)}`).join('\n')}\n`,
  );
  for (const s of ['postinst', 'postrm']) writeFileSync(join(control, s), POSTINST(), { mode: 0o755 });
  for (const f of ['control', 'conffiles', 'md5sums']) chmodSync(join(control, f), 0o644);
  const out = join(OUT, `node-bootstrap_${VERSION}-${RELEASE}_all.deb`);
  sh('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', dir, out], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(mtime) },
  });
  return out;
}

function rpm(entries, mtime) {
  if (spawnSync('rpmbuild', ['--version']).status !== 0)
    throw new Error('package: rpmbuild is missing: apt-get install rpm (scripts/setup.sh installs it)');
  const top = join(BUILD, 'rpm');
  rmSync(top, { recursive: true, force: true });
  for (const d of ['SPECS', 'RPMS', 'BUILD', 'BUILDROOT', 'SRPMS', 'tmp'])
    mkdirSync(join(top, d), { recursive: true });
  const attr = (e) => `%attr(${e.mode.toString(8).padStart(4, '0')},root,root)`;
  const filesSection = entries.map((e) => {
    if (e.kind === 'dir') return `%dir ${attr(e)} ${e.path}`;
    if (e.kind === 'config') return `%config(noreplace) ${attr(e)} ${e.path}`;
    return `${attr(e)} ${e.path}`;
  });
  const script = POSTINST().replace(/^#!.*\n/, '');
  const spec = `
Name: node-bootstrap
Version: ${VERSION}
Release: ${RELEASE}
Summary: ${SUMMARY}
License: ${pkg.license}
BuildArch: noarch
Requires: ${RPM_REQUIRES}
# Pure JavaScript plus a /bin/sh launcher: nothing for rpm to discover; the runtime is named above.
AutoReqProv: no

%description
${DESCRIPTION.join('\n')}

%install
mkdir -p %{buildroot}
cp -a ${ROOT}/. %{buildroot}/

%post
${script}
%postun
${script}
%files
${filesSection.join('\n')}
`;
  const specFile = join(top, 'SPECS', 'node-bootstrap.spec');
  writeFileSync(specFile, spec);
  sh(
    'rpmbuild',
    [
      '-bb',
      '--quiet',
      '--define',
      `_topdir ${top}`,
      '--define',
      `_tmppath ${join(top, 'tmp')}`,
      '--define',
      '_build_id_links none',
      '--define',
      '__os_install_post %{nil}',
      '--define',
      'use_source_date_epoch_as_buildtime 1',
      '--define',
      'clamp_mtime_to_source_date_epoch 1',
      '--define',
      '_buildhost node-bootstrap',
      specFile,
    ],
    { env: { ...process.env, SOURCE_DATE_EPOCH: String(mtime), TMPDIR: join(top, 'tmp') } },
  );
  const name = `node-bootstrap-${VERSION}-${RELEASE}.noarch.rpm`;
  const built = join(top, 'RPMS', 'noarch', name);
  const out = join(OUT, name);
  cpSync(built, out);
  return out;
}

if (!existsSync(BUNDLE))
  throw new Error('package: dist/node-bootstrap.mjs is missing: run `npm run build` first');
const mtime = epoch();
rmSync(OUT, { recursive: true, force: true });
mkdirSync(BUILD, { recursive: true });
const entries = layout();
stage(entries, mtime);
const outputs = [tarball(entries, mtime), rpm(entries, mtime), deb(entries, mtime)];
const sums = outputs.map((f) => `${sha256(f)}  ${f.slice(OUT.length + 1)}`);
writeFileSync(join(OUT, 'SHA256SUMS'), `${sums.join('\n')}\n`);
rmSync(BUILD, { recursive: true, force: true });
for (const f of outputs) console.log(`${f}  ${statSync(f).size} bytes`);
