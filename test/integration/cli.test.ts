/** The shipped bundle as users script against it: commands, exit codes, config errors, signals. */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import pkg from '../../package.json' with { type: 'json' };

const BIN = join(import.meta.dirname, '..', '..', 'dist', 'node-bootstrap.mjs');
const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = ENV): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
    );
  });
}

function configDir(yaml: string): { dir: string; file: string; state: string } {
  const dir = mkdtempSync(join(tmpdir(), 'nb-cli-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  return { dir, file, state: join(dir, 'state') };
}

describe('node-bootstrap CLI', () => {
  it('--version prints the package version', async () => {
    expect(await cli(['--version'])).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });

  it('--help lists every command and the exit codes; no command is a usage error', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    for (const c of ['run', 'check', 'resolve-image', 'prefetch', 'guard', 'report'])
      expect(help.stdout).toContain(c);
    expect(help.stdout).toMatch(/78 configuration error/);
    expect((await cli([])).code).toBe(2);
  });

  it.each([
    [['frobnicate'], /USAGE: unknown command `frobnicate`/],
    [['run', '--bogus'], /USAGE: run: Unknown option '--bogus'/],
    [['run', '--skip', 'cri,kubelett'], /--skip: unknown phase `kubelett`[\s\S]*phases are: containerd-unit/],
    [['resolve-image'], /resolve-image needs --region/],
  ])('%j → exit 2 with an actionable message', async (args, re) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr).toMatch(/fix: /);
  });

  it('command --help prints its usage', async () => {
    const r = await cli(['resolve-image', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/usage: node-bootstrap resolve-image --region REGION/);
  });

  it('resolve-image --json prints the documented fields', async () => {
    const r = await cli(['resolve-image', '--region', 'me-south-1', '--tag', '3.9', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      image: '558608220178.dkr.ecr.me-south-1.amazonaws.com/eks/pause:3.9',
      registry: '558608220178.dkr.ecr.me-south-1.amazonaws.com',
      account: '558608220178',
      region: 'me-south-1',
      partition: 'aws',
    });
    const fips = await cli(['resolve-image', '--region', 'us-gov-west-1', '--fips']);
    expect(fips.stdout).toBe('013241004608.dkr.ecr-fips.us-gov-west-1.amazonaws.com/eks/pause:3.10\n');
    const fromEnv = await cli(['resolve-image'], { ...ENV, AWS_REGION: 'cn-north-1' });
    expect(fromEnv.stdout).toBe('918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn/eks/pause:3.10\n');
  });

  it('a bad config exits 78 naming file and key, before anything on the node is touched', async () => {
    const c = configDir('containerd:\n  socket: /run/x.sock\nsandboxImage:\n  tagg: "3.10"\n');
    const r = await cli(['run', '--config', c.file, '--state-dir', c.state]);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`${c.file}: sandboxImage: unknown key(s) tagg`);
    expect(existsSync(c.state)).toBe(false);
  });

  it('a missing socket fails CONTAINERD_SOCKET_TIMEOUT (exit 75) at the deadline, and report shows it', async () => {
    const c = configDir(
      `containerd:\n  socket: /tmp/nb-none-${process.pid}/c.sock\ntimeouts:\n  containerd-socket: 300ms\n`,
    );
    const r = await cli(['run', '--config', c.file, '--state-dir', c.state, '--skip', 'containerd-unit']);
    expect(r.code).toBe(75);
    expect(r.stdout).toMatch(
      /^node-bootstrap: FAILED phase=containerd-socket code=CONTAINERD_SOCKET_TIMEOUT retryable=true/m,
    );
    expect(r.stderr).toMatch(/never appeared after 0\.\ds/);
    const status = JSON.parse(readFileSync(join(c.state, 'status.json'), 'utf8'));
    expect(status).toMatchObject({ result: 'failed', exitCode: 75 });
    expect(status.phases[0]).toMatchObject({ name: 'containerd-unit', result: 'skipped' });
    expect(status.phases[1]).toMatchObject({ name: 'containerd-socket', result: 'failed' });
    const report = await cli(['report', '--state-dir', c.state]);
    expect(report.code).toBe(0);
    expect(report.stdout).toMatch(/containerd-socket\s+failed\s+\d+ ms\s+CONTAINERD_SOCKET_TIMEOUT/);
    expect(report.stdout).toMatch(/^fix: /m);
    expect(JSON.parse((await cli(['report', '--state-dir', c.state, '--json'])).stdout)).toEqual(status);
  });

  it('without a system bus, containerd-unit fails fast with DBUS_UNAVAILABLE (retryable, exit 75)', async () => {
    const c = configDir('containerd:\n  socket: /tmp/nb-none.sock\n');
    const env = { ...ENV, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=/tmp/nb-no-bus-${process.pid}` };
    const r = await cli(['run', '--config', c.file, '--state-dir', c.state], env);
    expect(r.code).toBe(75);
    expect(r.stdout).toMatch(/FAILED phase=containerd-unit code=DBUS_UNAVAILABLE/);
  });

  it('report without a timeline says where it looked (exit 2)', async () => {
    const r = await cli(['report', '--state-dir', '/nonexistent']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no timeline at \/nonexistent\/status\.json/);
  });

  it('SIGTERM while waiting aborts at once: exit 75, ABORTED in status.json', async () => {
    const c = configDir(`containerd:\n  socket: /tmp/nb-none-${process.pid}/c.sock\n`);
    const child = spawn(
      process.execPath,
      [BIN, 'run', '--config', c.file, '--state-dir', c.state, '--skip', 'containerd-unit'],
      {
        env: ENV,
      },
    );
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += String(d);
    });
    // Wait until the run is really waiting on the socket, then stop it like systemd would.
    const t0 = Date.now();
    while (!existsSync(join(c.state, 'status.json')) && Date.now() - t0 < 5_000)
      await new Promise((r) => setTimeout(r, 20));
    const sent = Date.now();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code).toBe(75);
    expect(Date.now() - sent).toBeLessThan(1_000);
    expect(stdout).toMatch(/FAILED phase=containerd-socket code=ABORTED/);
    const status = JSON.parse(readFileSync(join(c.state, 'status.json'), 'utf8'));
    expect(status.phases[1].error.message).toMatch(/received SIGTERM/);
  });
});
