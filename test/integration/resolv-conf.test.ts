/**
 * The resolv-conf phase in the shipped bundle (`run`, the phases before it skipped or run against a
 * real containerd from the testbed): exit codes, messages naming the containerd version, waiting for
 * a file written late, the warn and repair policies, and the timeline it leaves.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { RunStatus } from '../../src/runner/status.js';
import { startTestbed, type Testbed } from '../testbed/index.js';

const BIN = join(import.meta.dirname, '..', '..', 'dist', 'node-bootstrap.mjs');
const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
/** Only resolv-conf runs (no containerd, no systemd here). */
const ONLY_RESOLV = 'containerd-unit,containerd-socket,cri,sandbox-image,kubelet';
/** containerd's socket and CRI too: the containerd version reaches the resolv-conf messages. */
const WITH_CRI = 'containerd-unit,sandbox-image,kubelet';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  status?: RunStatus;
  ms: number;
}

const DIR = mkdtempSync(join(tmpdir(), 'nb-resolv-it-'));
afterAll(() => rmSync(DIR, { recursive: true, force: true }));
let seq = 0;

/** A scenario folder: files written, a config.yaml (kubelet.unit never matches this host's units). */
function scenario(
  files: Record<string, string>,
  kubelet: Record<string, unknown>,
  extra: Record<string, unknown> = {},
) {
  const dir = join(DIR, `s${++seq}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const config = join(dir, 'config.yaml');
  const resolve = (v: unknown) => (typeof v === 'string' && v.startsWith('./') ? join(dir, v.slice(2)) : v);
  writeFileSync(
    config,
    stringify({
      kubelet: {
        unit: `nb-test-${process.pid}.service`,
        ...Object.fromEntries(Object.entries(kubelet).map(([k, v]) => [k, resolve(v)])),
      },
      ...extra,
    }),
  );
  return { dir, config, state: join(dir, 'state'), path: (name: string) => join(dir, name) };
}

function run(
  s: { config: string; state: string },
  skip = ONLY_RESOLV,
  env: Record<string, string> = ENV,
): Promise<Run> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, 'run', '--config', s.config, '--state-dir', s.state, '--skip', skip],
      { env, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const file = join(s.state, 'status.json');
        resolve({
          code: err ? Number(err.code) : 0,
          stdout,
          stderr,
          status: existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as RunStatus) : undefined,
          ms: Math.round(performance.now() - t0),
        });
      },
    );
  });
}
const phase = (r: Run) => r.status!.phases.find((p) => p.name === 'resolv-conf')!;

describe('resolv-conf phase (bundle, no peers)', () => {
  it('a usable file passes; what kubelet trims is a warning in the timeline', async () => {
    const s = scenario(
      {
        'resolv.conf':
          'nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver 10.0.0.5\nsearch ec2.internal\n',
      },
      { resolvConf: './resolv.conf' },
    );
    const r = await run(s);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^node-bootstrap: OK \d\/6 phases in \d+\.\d\ds warnings=1 /m);
    expect(phase(r)).toMatchObject({
      result: 'ok',
      facts: {
        resolvConf: s.path('resolv.conf'),
        resolvConfSource: 'kubelet.resolvConf in node-bootstrap config',
        resolvConfNameservers: '10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5',
      },
    });
    expect(phase(r).warnings[0]).toMatch(/kubelet keeps the first 3 for pods and drops 10\.0\.0\.5/);
  });

  it('an empty file stops the run: RESOLV_CONF_INVALID, exit 78, kubelet not run', async () => {
    const s = scenario({ 'empty.conf': '' }, { resolvConf: './empty.conf' });
    const r = await run(s);
    expect(r.code).toBe(78);
    expect(r.stdout).toMatch(
      /FAILED phase=resolv-conf code=RESOLV_CONF_INVALID retryable=false hint="list the node's resolvers/,
    );
    expect(phase(r).error!.message).toMatch(
      /is empty: containerd 1\.7\.20\+ no longer falls back .* \(containerd's version is unknown here\)/,
    );
    expect(r.status!.phases.at(-1)).toMatchObject({ name: 'kubelet', result: 'not-run' });
  });

  it('found through kubelet.config: the stub file names systemd-resolved’s upstream file and the config key', async () => {
    const s = scenario(
      {
        'stub-resolv.conf': 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch ec2.internal\n',
        'kubelet.json': '',
      },
      { config: './kubelet.json' },
    );
    writeFileSync(
      s.path('kubelet.json'),
      JSON.stringify({ kind: 'KubeletConfiguration', resolvConf: s.path('stub-resolv.conf') }),
    );
    const r = await run(s);
    expect(r.code).toBe(78);
    const e = phase(r).error!;
    expect(e.code).toBe('RESOLV_CONF_INVALID');
    expect(e.message).toMatch(/127\.0\.0\.53 is systemd-resolved's stub/);
    expect(e.hint).toBe(
      `change resolvConf in ${s.path('kubelet.json')} to /run/systemd/resolve/resolv.conf (the upstream servers systemd-resolved uses)`,
    );
  });

  it('a file that appears while the phase waits is used', async () => {
    const s = scenario({}, { resolvConf: './late.conf' }, { timeouts: { 'resolv-conf': '6s' } });
    const started = run(s);
    // Write it only once the phase is waiting for it (the timeline says it started).
    const t0 = Date.now();
    const waiting = () => {
      try {
        const st = JSON.parse(readFileSync(join(s.state, 'status.json'), 'utf8')) as RunStatus;
        return st.phases.find((p) => p.name === 'resolv-conf')?.startedAt !== undefined;
      } catch {
        return false;
      }
    };
    while (!waiting() && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(s.path('late.conf'), 'nameserver 10.0.0.2\n');
    const r = await started;
    expect(r.code, r.stderr).toBe(0);
    expect(phase(r).durationMs).toBeGreaterThanOrEqual(250);
    expect(phase(r).durationMs).toBeLessThan(3_000);
  });

  it('a file that never appears: RESOLV_CONF_MISSING after half the deadline', async () => {
    const s = scenario({}, { resolvConf: './never.conf' }, { timeouts: { 'resolv-conf': '1s' } });
    const r = await run(s);
    expect(r.code).toBe(78);
    expect(phase(r).error).toMatchObject({ code: 'RESOLV_CONF_MISSING', retryable: false });
    expect(phase(r).error!.message).toContain(
      `${s.path('never.conf')}, kubelet's resolv.conf (kubelet.resolvConf in node-bootstrap config), does not exist`,
    );
    expect(phase(r).durationMs).toBeGreaterThanOrEqual(450);
    expect(phase(r).durationMs).toBeLessThan(1000);
  });

  it("kubelet's config does not parse: KUBELET_CONFIG_INVALID, exit 78", async () => {
    const s = scenario({ 'kubelet.json': '{"resolvConf": ' }, { config: './kubelet.json' });
    const r = await run(s);
    expect(r.code).toBe(78);
    expect(phase(r).error).toMatchObject({ code: 'KUBELET_CONFIG_INVALID' });
  });

  it('resolvConfPolicy: warn lets kubelet start, with the errors as warnings', async () => {
    const s = scenario({ 'empty.conf': '' }, { resolvConf: './empty.conf', resolvConfPolicy: 'warn' });
    const r = await run(s);
    expect(r.code, r.stderr).toBe(0);
    expect(phase(r).warnings).toEqual([
      expect.stringMatching(/is empty: .* \(resolvConfPolicy: warn, kubelet starts anyway\)$/),
    ]);
    expect(phase(r).facts.resolvConfPolicy).toBe('warn');
  });

  it('resolvConfPolicy: repair writes the corrected copy, and says why it cannot point a kubelet that is not installed', async () => {
    const s = scenario(
      { 'broken.conf': 'namserver 10.9.9.9\nnameserver 10.0.0.2\nnameserver 127.0.0.53\nsearch a.example\n' },
      { resolvConf: './broken.conf', resolvConfPolicy: 'repair' },
    );
    const r = await run(s);
    expect(r.code).toBe(78);
    const e = phase(r).error!;
    expect(e.code).toBe('RESOLV_CONF_INVALID');
    expect(e.message).toMatch(
      new RegExp(
        `wrote a corrected copy to ${s.state}/resolv\\.conf but cannot point kubelet at it: nb-test-\\d+\\.service was not found`,
      ),
    );
    expect(e.hint).toMatch(new RegExp(`^add --resolv-conf=${s.state}/resolv\\.conf to kubelet's flags`));
    const fixed = readFileSync(join(s.state, 'resolv.conf'), 'utf8');
    expect(fixed.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([
      'nameserver 10.0.0.2',
      'search a.example',
    ]);
    expect(fixed).toMatch(/^# Written by node-bootstrap \(kubelet\.resolvConfPolicy: repair\)/);
    expect(readFileSync(s.path('broken.conf'), 'utf8')).toMatch(/^namserver 10\.9\.9\.9\n/); // never edited
  });

  it('a usable file removes an earlier repair from the state dir', async () => {
    const s = scenario(
      { 'resolv.conf': 'nameserver 10.0.0.2\n' },
      { resolvConf: './resolv.conf', resolvConfPolicy: 'repair' },
    );
    mkdirSync(s.state, { recursive: true });
    writeFileSync(join(s.state, 'resolv.conf'), 'nameserver 10.0.0.9\n');
    writeFileSync(join(s.state, 'kubelet-resolv.env'), 'KUBELET_EXTRA_ARGS=--resolv-conf=x\n');
    const r = await run(s);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(s.state, 'resolv.conf'))).toBe(false);
    expect(existsSync(join(s.state, 'kubelet-resolv.env'))).toBe(false);
  });

  it('a bad policy is a config error naming the key (exit 78)', async () => {
    const s = scenario({}, { resolvConfPolicy: 'fix-it' });
    const r = await run(s);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(
      /kubelet\.resolvConfPolicy: Invalid option: expected one of "fail"\|"warn"\|"repair"/,
    );
  });
});

describe.each(['1.7', '1.6'] as const)('resolv-conf after the cri phase (real containerd %s)', (version) => {
  let tb: Testbed;
  beforeAll(async () => {
    tb = await startTestbed({ containerd: { version }, registry: false, ecr: false, imds: false });
  });
  afterAll(() => tb?.stop());

  it('an empty file: the message names the containerd version and the 1.7.20 change', async () => {
    const s = scenario(
      { 'empty.conf': '' },
      { resolvConf: './empty.conf' },
      { containerd: { socket: tb.containerd!.socket } },
    );
    const r = await run(s, WITH_CRI, tb.env);
    expect(r.code).toBe(78);
    const cri = r.status!.phases.find((p) => p.name === 'cri')!;
    const v = String(cri.facts.containerdVersion);
    const msg = phase(r).error!.message;
    if (version === '1.7')
      expect(msg).toContain(`containerd ${v} (1.7.20+) no longer falls back to the host's /etc/resolv.conf`);
    else
      expect(msg).toContain(
        `containerd ${v} still copies the host's /etc/resolv.conf for an empty DNS config, but 1.7.20 removed that fallback`,
      );
  });
});
