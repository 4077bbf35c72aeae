/**
 * Smoke test of the e2e harness: a real systemd boots, containerd runs as containerd.service with
 * a private config, the host reaches its socket (ctr and the project's CRI adapter) and the system
 * bus (dbus-next), journald records, node runs inside, two containers boot side by side, and
 * nothing is left behind.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCriClient } from '../../src/adapters/cri.js';
import {
  bootSystemd,
  eventually,
  findLeftovers,
  readInside,
  type SystemdContainer,
  sweepStale,
} from './harness.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SOCKET = '/run/containerd/containerd.sock';

const CONTAINERD_UNIT = `[Unit]
Description=containerd (e2e harness smoke test)
After=local-fs.target

[Service]
Type=notify
ExecStart=/usr/bin/containerd --config /etc/containerd/config.toml
Delegate=yes
KillMode=process
Restart=on-failure
LimitNOFILE=infinity

[Install]
WantedBy=multi-user.target
`;

const CONTAINERD_CONFIG = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = []

[grpc]
  address = "${SOCKET}"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
`;

/** A oneshot that runs at boot and proves files and units were in place before PID 1 started. */
const PROBE_UNIT = `[Unit]
Description=e2e probe: reads a file written before boot
ConditionPathExists=/etc/e2e/marker

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/bin/e2e-probe

[Install]
WantedBy=multi-user.target
`;

const BROKEN_UNIT = `[Unit]
Description=e2e: a unit that fails at boot

[Service]
Type=oneshot
ExecStart=/bin/false

[Install]
WantedBy=multi-user.target
`;

const timings: Record<string, number> = {};

describe('bootSystemd: one container with containerd.service', () => {
  let c: SystemdContainer;

  beforeAll(async () => {
    c = await bootSystemd({
      name: 'smoke',
      units: {
        '/etc/systemd/system/containerd.service': CONTAINERD_UNIT,
        'e2e-probe.service': PROBE_UNIT,
      },
      files: {
        '/etc/containerd/config.toml': CONTAINERD_CONFIG,
        '/etc/e2e/marker': 'written-before-boot\n',
        '/etc/e2e/link': { symlink: 'marker' },
        '/usr/local/bin/e2e-probe': '#!/bin/sh\necho "probe saw $(cat /etc/e2e/marker)"\n',
      },
      enable: ['containerd.service', 'e2e-probe.service'],
      mask: ['systemd-tmpfiles-clean.timer'],
      binds: [{ host: REPO, inside: '/srv/node-bootstrap', readOnly: true }],
      tmpfs: ['/var/lib/containerd'],
    });
    timings['boot: PID 1 started (ms)'] = c.timings.leaderMs;
    timings['boot: running (ms)'] = c.timings.runningMs;
  });

  afterAll(async () => {
    if (!c) return;
    await c.stop();
    timings['stop (ms)'] = c.timings.stopMs;
    expect(findLeftovers(c)).toEqual([]);
  });

  it('boots to running with no failed unit', () => {
    expect(c.failedUnits).toEqual([]);
    expect(c.bootState).toBe('running');
    expect(c.timings.runningMs).toBeLessThan(15_000);
  });

  it('units, files and enablement exist before PID 1 starts; masks apply', async () => {
    const probe = await c.systemctl('show', '-p', 'ActiveState', '-p', 'Result', 'e2e-probe.service');
    expect(probe.stdout.trim().split('\n').sort()).toEqual(['ActiveState=active', 'Result=success']);
    const out = await c.waitJournal(
      ['-u', 'e2e-probe.service'],
      (e) => e.MESSAGE === 'probe saw written-before-boot',
    );
    expect(out[0]?._SYSTEMD_UNIT).toBe('e2e-probe.service');
    // lean (default) masked logind & co; `mask` adds to that.
    expect((await c.systemctl('show', '-P', 'LoadState', 'systemd-logind.service')).stdout.trim()).toBe(
      'masked',
    );
    expect((await c.systemctl('show', '-P', 'LoadState', 'systemd-tmpfiles-clean.timer')).stdout.trim()).toBe(
      'masked',
    );
    // The host's own enabled units (docker-registry, postgresql, …) are not started.
    const enabled = await c.exec(['sh', '-c', 'ls /etc/systemd/system/multi-user.target.wants'], {
      check: true,
    });
    expect(enabled.stdout.split('\n').filter(Boolean).sort()).toEqual([
      'containerd.service',
      'e2e-probe.service',
    ]);
    expect((await c.exec(['hostname'], { check: true })).stdout.trim()).toBe(c.name);
    expect((await c.exec(['cat', '/etc/e2e/link'], { check: true })).stdout).toBe('written-before-boot\n');
  });

  it('runs containerd as containerd.service with the private config', async () => {
    const r = await c.systemctl('is-active', 'containerd');
    expect(r.stdout.trim()).toBe('active');
    const mounts = await c.exec(['findmnt', '-n', '-o', 'FSTYPE', '/var/lib/containerd'], { check: true });
    expect(mounts.stdout.trim()).toBe('tmpfs');
  });

  it('the host reaches containerd through /proc/<pid>/root: ctr and the CRI adapter', async () => {
    const socket = c.path(SOCKET);
    const { stdout } = await promisify(execFile)(
      'ctr',
      ['--address', socket, '--connect-timeout', '2s', 'version'],
      { timeout: 10_000 },
    );
    expect(stdout).toMatch(/Server:\s+Version:\s+\S+/);

    const cri = createCriClient(socket, { waitForReady: false });
    try {
      const v = await cri.version(AbortSignal.timeout(5_000));
      expect(v.runtimeName).toBe('containerd');
      expect(v.runtimeApiVersion).toBe('v1');
    } finally {
      cri.close();
    }
  });

  it('a host-side dbus-next client reads ActiveState of containerd.service over busAddress', async () => {
    const bus = dbus.sessionBus({ busAddress: c.busAddress });
    try {
      const systemd = await bus.getProxyObject('org.freedesktop.systemd1', '/org/freedesktop/systemd1');
      const manager = systemd.getInterface('org.freedesktop.systemd1.Manager');
      const unitPath = (await manager.GetUnit!('containerd.service')) as string;
      const unit = await bus.getProxyObject('org.freedesktop.systemd1', unitPath);
      const props = unit.getInterface('org.freedesktop.DBus.Properties');
      const state = (await props.Get!('org.freedesktop.systemd1.Unit', 'ActiveState')) as { value: string };
      expect(state.value).toBe('active');
    } finally {
      bus.disconnect();
    }
  });

  it('journald records what is logged inside; journal() keeps large fields (-a)', async () => {
    const tag = `nb-e2e-${Date.now()}`;
    await c.exec(['systemd-cat', '-t', tag, 'echo', 'hello journal'], { check: true });
    await c.exec(['systemd-cat', '-t', tag, 'sh', '-c', "printf '%06000d\\n' 0"], { check: true });
    const entries = await c.waitJournal(['-t', tag], (e) => e.MESSAGE === 'hello journal');
    expect(entries[0]?.SYSLOG_IDENTIFIER).toBe(tag);
    const all = await c.journal(['-t', tag]);
    expect(all.some((e) => typeof e.MESSAGE === 'string' && e.MESSAGE.length === 6000)).toBe(true);
    // What -a is for: plain `journalctl -o json` nulls fields over 4096 bytes.
    const plain = await c.exec(['journalctl', '-o', 'json', '--no-pager', '-t', tag], { check: true });
    expect(plain.stdout).toContain('"MESSAGE":null');
  });

  it('runs the host node binary inside, with the project bound at /srv/node-bootstrap', async () => {
    const r = await c.exec(
      [
        '/usr/bin/node',
        '-e',
        "const p=require('/srv/node-bootstrap/package.json');console.log(process.version, p.name, process.pid)",
      ],
      { check: true },
    );
    const [version, pkg, pid] = r.stdout.trim().split(' ');
    expect(version).toBe(process.version);
    expect(pkg).toBe('node-bootstrap');
    expect(Number(pid)).toBeGreaterThan(1); // a pid of the container's own namespace
    expect(await readInside(c, '/etc/hostname')).toBe(`${c.name}\n`);
  });

  it('runUnit runs a command as a transient unit: its cgroup, its journal attribution, its exit code', async () => {
    // journald looks the sender's unit up from its pid when it reads the stream: a sender that
    // exits at once loses _SYSTEMD_UNIT under load (observed ~1 run in 3). The sleep keeps it alive.
    const r = await c.runUnit(
      ['sh', '-c', "cat /proc/self/cgroup; systemd-cat -t e2e-rununit sh -c 'echo to-journal; sleep 0.5'"],
      { unit: 'e2e-rununit', check: true },
    );
    expect(r.stdout).toMatch(/name=systemd:.*\/system.slice\/e2e-rununit.service/);
    const entries = await c.waitJournal(['-t', 'e2e-rununit'], (e) => e.MESSAGE === 'to-journal');
    expect(entries[0]?._SYSTEMD_UNIT).toBe('e2e-rununit.service');
    expect((await c.runUnit(['sh', '-c', 'exit 4'])).code).toBe(4);
  });

  it('exec reports exit codes and honours its deadline', async () => {
    expect((await c.exec(['sh', '-c', 'exit 3'])).code).toBe(3);
    await expect(c.exec(['false'], { check: true })).rejects.toThrow(/exit 1/);
    const t0 = Date.now();
    await expect(c.exec(['sleep', '30'], { timeoutMs: 200 })).rejects.toThrow(/timed out after 200 ms/);
    expect(Date.now() - t0).toBeLessThan(2_000);
    // The deadline killed the command inside too, not only nsenter.
    await eventually('sleep 30 gone', async () => (await c.exec(['pgrep', '-x', 'sleep'])).code === 1, {
      timeoutMs: 2_000,
    });
  });
});

describe('bootSystemd: two containers in parallel', () => {
  it('boot side by side with distinct names, then stop cleanly', async () => {
    const t0 = Date.now();
    const both = await Promise.all([
      bootSystemd({ name: 'par-a' }),
      bootSystemd({ name: 'par-b', privateNetwork: false }),
    ]);
    timings['parallel: both running (ms)'] = Date.now() - t0;
    try {
      const [a, b] = both;
      expect(a.name).not.toBe(b.name);
      expect(a.leaderPid).not.toBe(b.leaderPid);
      for (const x of both) {
        expect(x.bootState).toBe('running');
        expect((await x.exec(['hostname'], { check: true })).stdout.trim()).toBe(x.name);
      }
      // Each has its own root: a file written in one is absent in the other.
      await a.exec(['sh', '-c', 'echo a > /etc/only-in-a'], { check: true });
      expect((await b.exec(['test', '-e', '/etc/only-in-a'])).code).toBe(1);
      // Network: a (private, only lo) cannot reach a server on the host's 127.0.0.1; b (host network) can.
      const server = createServer((_, res) => res.end('host says hi'));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const { port } = server.address() as AddressInfo;
        const get = `fetch('http://127.0.0.1:${port}/').then(async r=>console.log(await r.text()),e=>{console.log(e.cause?.code);process.exitCode=1})`;
        expect((await b.exec(['/usr/bin/node', '-e', get], { check: true })).stdout.trim()).toBe(
          'host says hi',
        );
        const fromA = await a.exec(['/usr/bin/node', '-e', get]);
        expect([fromA.code, fromA.stdout.trim()]).toEqual([1, 'ECONNREFUSED']);
        expect((await a.exec(['ls', '/sys/class/net'], { check: true })).stdout.trim()).toBe('lo');
      } finally {
        server.close();
      }
    } finally {
      // A command still running through exec must not hold up the poweroff.
      const pending = both[0].exec(['sleep', '60']);
      await eventually(
        'sleep 60 started',
        async () => (await both[0].exec(['pgrep', '-x', 'sleep'])).code === 0,
      );
      const t1 = Date.now();
      await Promise.all(both.map((x) => x.stop()));
      timings['parallel: both stopped (ms)'] = Date.now() - t1;
      expect((await pending).code).toBe(137);
      expect(Date.now() - t1).toBeLessThan(5_000);
    }
    for (const x of both) expect(findLeftovers(x)).toEqual([]);
    // stop() is idempotent; a stopped container refuses exec (its pid may belong to another process).
    await both[0].stop();
    await expect(both[0].exec(['true'])).rejects.toThrow(/is stopped/);
  });
});

describe('bootSystemd: failures are reported and cleaned up', () => {
  it('rejects bad options before touching the machine', async () => {
    await expect(
      bootSystemd({ units: { 'x.service': '[Service]\nExecStart=/bin/true\n' }, enable: ['x.service'] }),
    ).rejects.toThrow(/x.service has no \[Install\]/);
    await expect(bootSystemd({ files: { 'etc/relative': 'x' } })).rejects.toThrow(/absolute path/);
    await expect(bootSystemd({ binds: [{ host: '/nonexistent-nb-e2e', inside: '/srv/x' }] })).rejects.toThrow(
      /does not exist/,
    );
    await expect(bootSystemd({ files: { '/var/lib/x/a': 'x' }, tmpfs: ['/var/lib/x'] })).rejects.toThrow(
      /hidden by the tmpfs/,
    );
  });

  it('a unit failing at boot: degraded with failedUnits, or a clear error with requireRunning', async () => {
    const opts = {
      name: 'degraded',
      units: { 'e2e-broken.service': BROKEN_UNIT },
      enable: ['e2e-broken.service'],
    };
    const c = await bootSystemd(opts);
    try {
      expect(c.bootState).toBe('degraded');
      expect(c.failedUnits).toEqual(['e2e-broken.service']);
    } finally {
      await c.stop();
    }
    expect(findLeftovers(c)).toEqual([]);

    const err = await bootSystemd({ ...opts, requireRunning: true }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/^boot nb-degraded-\S+: boot degraded: failed units: e2e-broken.service/);
    expect(err?.message).toContain('--- nspawn output');
    expect(err?.message).toMatch(/Failed to start.*e2e-broken.service/);
    const name = /^boot (\S+):/.exec(err?.message ?? '')?.[1] ?? '';
    expect(ourProcesses(name)).toEqual([]);
  });

  it('a boot abandoned through its signal leaves nothing behind', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('hook timed out')), 150);
    await expect(bootSystemd({ name: 'aborted', signal: ac.signal })).rejects.toThrow(
      /boot aborted: Error: hook timed out/,
    );
    expect(ourProcesses(`nb-aborted-${process.pid}-`)).toEqual([]);
  });

  it('a container whose test process was SIGKILLed is swept by the next boot', async () => {
    const script = join(tmpdir(), `nb-e2e-crash-${process.pid}.mts`);
    await writeFile(
      script,
      `import { bootSystemd } from ${JSON.stringify(join(REPO, 'test/e2e/harness.ts'))};
const c = await bootSystemd({ name: 'crashed' });
console.log(JSON.stringify({ name: c.name, stateDir: c.stateDir, leaderPid: c.leaderPid }));
setInterval(() => {}, 1000);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let buf = '';
        child.stdout.on('data', (d) => {
          buf += d;
          if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
        });
        child.once('exit', (code) => reject(new Error(`crash helper exited ${code} before booting`)));
      });
      const crashed = JSON.parse(line) as { name: string; stateDir: string; leaderPid: number };
      expect(existsSync(`/proc/${crashed.leaderPid}`)).toBe(true);
      child.kill('SIGKILL'); // no stop(), no exit hook: the container runs on, orphaned
      await new Promise((r) => child.once('exit', r));
      await sweepStale(); // (a concurrent boot elsewhere may have swept it already: same result)
      expect(findLeftovers(crashed)).toEqual([]);
    } finally {
      child.kill('SIGKILL');
      await rm(script, { force: true });
    }
  });
});

/** Processes (ours or not) whose command line names `needle`, e.g. a machine name. */
function ourProcesses(needle: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle) && !cmd.includes('vitest')) out.push(`${pid}: ${cmd}`);
    } catch {}
  }
  return out;
}

afterAll(() => {
  // No systemd-nspawn of this test process is left, whatever happened above.
  expect(ourProcesses(`-${process.pid}-`).filter((p) => p.includes('systemd-nspawn'))).toEqual([]);
  console.log(
    `e2e harness timings:\n${Object.entries(timings)
      .map(([k, v]) => `  ${k}: ${v}`)
      .join('\n')}`,
  );
});
