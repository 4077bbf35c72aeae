import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_RUN_TIMEOUT_MS, DEFAULT_TIMEOUTS, loadConfig, parseDuration } from '../../src/config.js';
import { BootError } from '../../src/errors.js';

function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'nb-config-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

function loadError(files: Record<string, string>): BootError {
  const dir = tree(files);
  try {
    loadConfig({ file: join(dir, 'config.yaml'), env: {} });
  } catch (err) {
    expect(err).toBeInstanceOf(BootError);
    return err as BootError;
  }
  throw new Error('expected loadConfig to fail');
}

describe('loadConfig', () => {
  it('gives documented defaults for a missing default file', () => {
    const cfg = loadConfig({ file: undefined, env: {} });
    expect(cfg.containerd).toEqual({
      socket: '/run/containerd/containerd.sock',
      socketSet: false,
      config: '/etc/containerd/config.toml',
      namespace: 'k8s.io',
      unit: 'containerd.service',
    });
    expect(cfg.sandboxImage.tag).toBe('3.10');
    expect(cfg.sandboxImage.source).toBe('auto');
    expect(cfg.sandboxImage.archive).toBeUndefined();
    expect(cfg.timeouts).toEqual(DEFAULT_TIMEOUTS);
    expect(cfg.runTimeoutMs).toBe(660_000);
  });

  it("deadlines fit: sum of phase defaults < timeouts.run < the unit's TimeoutStartSec < 15 min (node groups give up)", () => {
    const unit = readFileSync(join(import.meta.dirname, '../../systemd/node-bootstrap.service'), 'utf8');
    const m = /^TimeoutStartSec=(\d+)min$/m.exec(unit);
    expect(m, 'TimeoutStartSec=<n>min in node-bootstrap.service').not.toBeNull();
    const startSec = Number(m![1]) * 60_000;
    const sum = Object.values(DEFAULT_TIMEOUTS).reduce((a, b) => a + b, 0);
    expect(sum).toBeLessThan(DEFAULT_RUN_TIMEOUT_MS);
    expect(DEFAULT_RUN_TIMEOUT_MS).toBeLessThan(startSec);
    expect(startSec).toBeLessThan(15 * 60_000);
  });

  it('sandboxImage.source and timeouts.run', () => {
    const dir = tree({ 'config.yaml': 'sandboxImage:\n  source: archive\ntimeouts:\n  run: 10m\n' });
    const cfg = loadConfig({ file: join(dir, 'config.yaml'), env: {} });
    expect(cfg.sandboxImage.source).toBe('archive');
    expect(cfg.runTimeoutMs).toBe(600_000);
    const bad = tree({ 'config.yaml': 'sandboxImage:\n  source: ecr\n' });
    expect(() => loadConfig({ file: join(bad, 'config.yaml'), env: {} })).toThrow(
      /config\.yaml: sandboxImage\.source: .*"auto"/,
    );
  });

  it('report and metrics: defaults, a directory, or false to turn them off', () => {
    expect(loadConfig({ file: undefined, env: {} })).toMatchObject({
      report: { logDir: '/var/log/node-bootstrap', history: 5 },
      metrics: { textfileDir: '/var/lib/node_exporter/textfile_collector' },
    });
    const dir = tree({
      'config.yaml': 'report:\n  logDir: false\n  history: 0\nmetrics:\n  textfileDir: /srv/prom\n',
    });
    expect(loadConfig({ file: join(dir, 'config.yaml'), env: {} })).toMatchObject({
      report: { logDir: false, history: 0 },
      metrics: { textfileDir: '/srv/prom' },
    });
  });

  it('merges config.d drop-ins in name order; arrays are replaced, objects merged', () => {
    const dir = tree({
      'config.yaml': 'region: eu-west-1\ncontainerd:\n  socket: /a.sock\nprefetch:\n  images: [r.io/a:1]\n',
      'config.d/20-late.yaml': 'region: eu-west-2\n',
      'config.d/10-early.yaml':
        'region: us-east-1\ncontainerd:\n  namespace: other\nprefetch:\n  images: [r.io/b:2]\n',
      'config.d/ignored.txt': 'region: nope',
    });
    const cfg = loadConfig({ file: join(dir, 'config.yaml'), env: {} });
    expect(cfg.region).toBe('eu-west-2');
    expect(cfg.containerd.socket).toBe('/a.sock');
    expect(cfg.containerd.namespace).toBe('other');
    expect(cfg.prefetch.images).toEqual([{ image: 'r.io/b:2', priority: 0 }]);
    expect(cfg.sources.map((s) => s.slice(dir.length))).toEqual([
      '/config.yaml',
      '/config.d/10-early.yaml',
      '/config.d/20-late.yaml',
    ]);
  });

  it('parses durations in timeouts', () => {
    const dir = tree({ 'config.yaml': 'timeouts:\n  cri: 90s\n  kubelet: 2m\n  resolv-conf: 1.5\n' });
    const cfg = loadConfig({ file: join(dir, 'config.yaml'), env: {} });
    expect(cfg.timeouts.cri).toBe(90_000);
    expect(cfg.timeouts.kubelet).toBe(120_000);
    expect(cfg.timeouts['resolv-conf']).toBe(1_500);
  });

  it('prefetch I/O signal keys: window (0 = avg10 only) and drain, with defaults', () => {
    expect(loadConfig({ file: undefined, env: {} }).prefetch).toMatchObject({ windowMs: 1_000, drain: true });
    const dir = tree({
      'config.yaml': 'prefetch:\n  drain: false\n  pressure:\n    window: 500ms\n    some: 30\n',
    });
    const cfg = loadConfig({ file: join(dir, 'config.yaml'), env: {} });
    expect(cfg.prefetch).toMatchObject({ windowMs: 500, drain: false, pressure: { some: 30, full: 5 } });
    const off = tree({ 'config.yaml': 'prefetch:\n  pressure:\n    window: 0\n' });
    expect(loadConfig({ file: join(off, 'config.yaml'), env: {} }).prefetch.windowMs).toBe(0);
  });

  it.each([
    ['unknown top-level key', 'regoin: eu-west-1\n', /config\.yaml: unknown key\(s\) regoin/],
    ['unknown nested key', 'containerd:\n  sock: /x\n', /config\.yaml: containerd: unknown key\(s\) sock/],
    ['wrong type', 'sandboxImage:\n  fips: "yes"\n', /config\.yaml: sandboxImage\.fips: .*boolean/],
    ['relative path', 'containerd:\n  socket: run/c.sock\n', /containerd\.socket: expected an absolute path/],
    ['bad region', 'region: Europe\n', /region: expected an AWS region/],
    [
      'relative NodeConfig file',
      'nodeConfig:\n  file: user-data\n',
      /nodeConfig\.file: expected an absolute path/,
    ],
    ['nodeConfig.imds not a boolean', 'nodeConfig:\n  imds: sometimes\n', /nodeConfig\.imds: .*boolean/],
    ['bad duration', 'timeouts:\n  cri: soon\n', /timeouts\.cri: expected a positive duration/],
    ['unknown phase timeout', 'timeouts:\n  crii: 5s\n', /timeouts: unknown key\(s\) crii/],
    ['bad unit', 'kubelet:\n  unit: kubelet\n', /kubelet\.unit: expected a systemd unit name/],
    [
      'bad image',
      'sandboxImage:\n  image: "pause 3.10"\n',
      /sandboxImage\.image: expected a full image reference/,
    ],
    [
      'relative log dir',
      'report:\n  logDir: var/log\n',
      /report\.logDir: expected an absolute path or false/,
    ],
    [
      'metrics dir true',
      'metrics:\n  textfileDir: true\n',
      /metrics\.textfileDir: expected an absolute path or false/,
    ],
    ['negative history', 'report:\n  history: -1\n', /report\.history: .*>=0/],
    ['prefetch.drain not a boolean', 'prefetch:\n  drain: sometimes\n', /prefetch\.drain: .*boolean/],
    [
      'bad prefetch.pressure.window',
      'prefetch:\n  pressure:\n    window: soon\n',
      /prefetch\.pressure\.window: /,
    ],
    ['YAML syntax', 'region: [eu-west-1\n', /config\.yaml: YAML syntax error at line/],
    ['duplicate key', 'region: eu-west-1\nregion: eu-west-2\n', /YAML syntax error/],
  ])('%s → CONFIG_INVALID naming file and key', (_name, text, re) => {
    const err = loadError({ 'config.yaml': text });
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.exitCode).toBe(78);
    expect(err.message).toMatch(re);
  });

  it('names the drop-in that holds the bad key', () => {
    const err = loadError({
      'config.yaml': 'region: eu-west-1\n',
      'config.d/50-bad.yaml': 'kubelet:\n  resolvConf: 3\n',
    });
    expect(err.message).toMatch(/config\.d\/50-bad\.yaml: kubelet\.resolvConf:/);
  });

  it('an explicit --config that does not exist is an error', () => {
    expect(() => loadConfig({ file: '/nonexistent/nb.yaml', env: {} })).toThrow(
      /nb\.yaml: cannot read \(ENOENT\)/,
    );
  });

  it('reads the AWS environment the SDK also honours', () => {
    const cfg = loadConfig({
      file: undefined,
      env: {
        AWS_REGION: 'ap-south-2',
        AWS_EC2_METADATA_DISABLED: 'TRUE',
        AWS_EC2_METADATA_SERVICE_ENDPOINT: 'http://x',
      },
    });
    expect(cfg.env).toMatchObject({ awsRegion: 'ap-south-2', imdsDisabled: true, imdsEndpoint: 'http://x' });
  });

  it('reads the proxy variables in both spellings, and only those; NodeConfig from IMDS by default', () => {
    const cfg = loadConfig({
      file: undefined,
      env: { HTTPS_PROXY: 'http://p:3128', no_proxy: 'localhost', ALL_PROXY: 'socks5://x', HTTP_PROXY: '' },
    });
    expect(cfg.env.proxy).toEqual({ HTTPS_PROXY: 'http://p:3128', no_proxy: 'localhost' });
    expect(cfg.nodeConfig).toEqual({ file: undefined, imds: true });
  });
});

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['90s', 90_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    [30, 30_000],
    ['0', undefined],
    [-1, undefined],
    ['5 minutes', undefined],
  ] as const)('%s → %s', (v, ms) => expect(parseDuration(v)).toBe(ms));
});
