/**
 * Where operators look, from the shipped bundle against real containerd 1.7 and the testbed: the
 * stdout lines, the timeline's copy in the log directory (with per-boot history), and the
 * node_exporter textfile metrics, read back by an independent text-format parser AND by a real
 * node_exporter (Debian's prometheus-node-exporter, extracted by scripts/setup.sh) scraping the
 * directory, as on a node.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PrefetchTimeline } from '../../src/commands/prefetch.js';
import { readBootId } from '../../src/runner/outputs.js';
import { ECR_HOST, startTestbed, type Testbed } from '../testbed/index.js';
import { pushDataImage } from '../testbed/pause-image.js';
import {
  BIN,
  ensureBuilt,
  explain,
  freshStateDir,
  leaks,
  REPO,
  runBundle,
  scenarioConfig,
  testbedSecrets,
} from './lib/run-bundle.js';

const NODE_EXPORTER = join(REPO, '.cache', 'node-exporter', 'usr', 'bin', 'prometheus-node-exporter');
const step = it.sequential;

type Samples = Record<string, { type: string; samples: { labels: Record<string, string>; value: number }[] }>;
function parse(text: string): Samples {
  const out: Samples = {};
  for (const f of parsePrometheusTextFormat(text)) {
    expect(out[f.name], `${f.name} once`).toBeUndefined();
    out[f.name] = {
      type: f.type,
      samples: f.metrics.map((m) => ({ labels: m.labels ?? {}, value: Number(m.value) })),
    };
  }
  return out;
}
/** Label sets compare as sets: node_exporter serves them sorted by name. */
const key = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort());
const value = (m: Samples, name: string, labels: Record<string, string> = {}): number | undefined =>
  m[name]?.samples.find((s) => key(s.labels) === key(labels))?.value;

const mode = (file: string): string => (statSync(file).mode & 0o777).toString(8);

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A real node_exporter with only the textfile collector, on a loopback port. */
async function startNodeExporter(dir: string): Promise<{ scrape(): Promise<string>; stop(): void }> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    NODE_EXPORTER,
    [
      '--collector.disable-defaults',
      '--collector.textfile',
      `--collector.textfile.directory=${dir}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    log += d;
  });
  const scrape = async (): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    if (!res.ok) throw new Error(`node_exporter answered ${res.status}`);
    return res.text();
  };
  for (let i = 0; ; i++) {
    try {
      await scrape();
      break;
    } catch (err) {
      if (i > 100 || child.exitCode !== null) throw new Error(`node_exporter did not start: ${err}\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { scrape, stop: () => child.kill('SIGTERM') };
}

describe('where operators look (containerd 1.7, bundle run and prefetch)', () => {
  let tb: Testbed;
  let logDir: string;
  let textDir: string;
  let exporter: Awaited<ReturnType<typeof startNodeExporter>>;
  const bootId = readBootId();

  beforeAll(async () => {
    await ensureBuilt();
    tb = await startTestbed({ containerd: { version: '1.7' } });
    logDir = join(tb.dir, 'log');
    textDir = join(tb.dir, 'textfile');
    mkdirSync(logDir, { mode: 0o755 });
    mkdirSync(textDir, { mode: 0o755 });
    await pushDataImage(tb.registry!, 'data/small', '1', { layers: 1, layerMB: 2 });
    exporter = await startNodeExporter(textDir);
  }, 180_000);
  /** The files of the last steps, printed at the end (the closing note of the issue asks for one). */
  const report: string[] = [];
  afterAll(async () => {
    if (report.length) console.log(`outputs:\n${report.join('\n')}`);
    exporter?.stop();
    await tb?.stop();
  });

  step(
    'a passing run: phase lines, a 0644 copy of status.json per boot, metrics a node_exporter serves',
    async () => {
      // Older boots' copies (and a file that is not one): the five newest per-boot copies are kept.
      const old = Array.from({ length: 6 }, (_, i) => `status-00000000-0000-0000-0000-00000000000${i}.json`);
      old.forEach((f, i) => {
        writeFileSync(join(logDir, f), '{}\n');
        utimesSync(join(logDir, f), 1_700_000_000 + i, 1_700_000_000 + i);
      });
      writeFileSync(join(logDir, 'notes.txt'), 'not ours\n');

      const state = freshStateDir(tb);
      const r = await runBundle('run', { config: tb.configFile, stateDir: state, env: tb.env });
      expect(r.code, explain(r)).toBe(0);
      expect(r.stdout.split('\n').filter(Boolean)).toEqual([
        'node-bootstrap: phase=containerd-unit skipped',
        expect.stringMatching(/^node-bootstrap: phase=containerd-socket done \d+\.\d\ds$/),
        expect.stringMatching(/^node-bootstrap: phase=cri done \d+\.\d\ds$/),
        expect.stringMatching(/^node-bootstrap: phase=sandbox-image done \d+\.\d\ds$/),
        'node-bootstrap: phase=resolv-conf skipped',
        'node-bootstrap: phase=kubelet skipped',
        expect.stringMatching(
          /^node-bootstrap: OK 3\/6 phases in \d+\.\d\ds skipped=containerd-unit,resolv-conf,kubelet$/,
        ),
      ]);

      // The copy: the same bytes as the state dir's, readable by a log collector, no temp file left.
      const copy = readFileSync(join(logDir, 'status.json'), 'utf8');
      expect(copy).toBe(r.timelineText);
      expect(mode(join(logDir, 'status.json'))).toBe('644');
      expect(bootId, 'this machine has a boot id').toBeDefined();
      expect(readFileSync(join(logDir, `status-${bootId}.json`), 'utf8')).toBe(copy);
      expect(mode(join(logDir, `status-${bootId}.json`))).toBe('644');
      expect(readdirSync(logDir).sort()).toEqual(
        ['notes.txt', 'status.json', `status-${bootId}.json`, ...old.slice(2)].sort(),
      );
      expect(leaks({ ...r, timelineText: copy }, testbedSecrets(tb))).toEqual([]);

      // The metrics file: atomic (nothing else in the directory), 0644, and it says what the timeline says.
      expect(readdirSync(textDir)).toEqual(['node_bootstrap.prom']);
      const file = join(textDir, 'node_bootstrap.prom');
      expect(mode(file)).toBe('644');
      const text = readFileSync(file, 'utf8');
      const m = parse(text);
      const st = r.timeline!;
      expect(
        value(m, 'node_bootstrap_info', {
          version: st.version,
          containerd_version: String(r.phase('cri').facts.containerdVersion),
        }),
      ).toBe(1);
      expect(value(m, 'node_bootstrap_run_success')).toBe(1);
      expect(value(m, 'node_bootstrap_run_finished')).toBe(1);
      expect(value(m, 'node_bootstrap_run_exit_code')).toBe(0);
      expect(value(m, 'node_bootstrap_run_timestamp_seconds')).toBe(Date.parse(st.startedAt) / 1000);
      expect(value(m, 'node_bootstrap_run_duration_seconds')).toBe(
        (Date.parse(st.finishedAt!) - Date.parse(st.startedAt)) / 1000,
      );
      expect(m.node_bootstrap_run_error).toBeUndefined();
      for (const p of ['containerd-socket', 'cri', 'sandbox-image'] as const) {
        expect(value(m, 'node_bootstrap_phase_duration_seconds', { phase: p })).toBe(
          r.phase(p).durationMs! / 1000,
        );
        expect(value(m, 'node_bootstrap_phase_success', { phase: p })).toBe(1);
      }
      // Skipped phases have no success sample.
      expect(m.node_bootstrap_phase_success!.samples.map((s) => s.labels.phase)).toEqual([
        'containerd-socket',
        'cri',
        'sandbox-image',
      ]);
      for (const f of Object.values(m)) expect(f.type).toBe('GAUGE');

      // node_exporter reads the directory and serves the same samples, with no scrape error.
      const served = parse(await exporter.scrape());
      expect(value(served, 'node_textfile_scrape_error')).toBe(0);
      expect(value(served, 'node_textfile_mtime_seconds', { file: file })).toBe(
        Math.floor(statSync(file).mtimeMs / 1000),
      );
      for (const [name, fam] of Object.entries(m))
        for (const s of fam.samples) expect(value(served, name, s.labels), `${name} served`).toBe(s.value);
    },
  );

  step(
    'a failing run: the error gauge names the phase and code; the copy and the metrics say FAILED',
    async () => {
      // containerd's socket never appears: the containerd-socket phase fails at its deadline.
      const config = scenarioConfig(tb, {
        containerd: { socket: join(tb.dir, 'no-such.sock') },
        timeouts: { 'containerd-socket': '500ms' },
      });
      const r = await runBundle('run', { config, stateDir: freshStateDir(tb), env: tb.env });
      expect(r.code, explain(r)).toBe(75);
      expect(r.stdout).toMatch(
        /^node-bootstrap: phase=containerd-socket FAILED code=CONTAINERD_SOCKET_TIMEOUT \d+\.\d\ds hint=".+" error=".+"$/m,
      );
      expect(r.verdict).toMatch(
        /^node-bootstrap: FAILED phase=containerd-socket code=CONTAINERD_SOCKET_TIMEOUT retryable=true hint="/,
      );
      expect(JSON.parse(readFileSync(join(logDir, 'status.json'), 'utf8'))).toMatchObject({
        result: 'failed',
        exitCode: 75,
      });
      const m = parse(readFileSync(join(textDir, 'node_bootstrap.prom'), 'utf8'));
      const error = { phase: 'containerd-socket', code: 'CONTAINERD_SOCKET_TIMEOUT' };
      expect(value(m, 'node_bootstrap_run_success')).toBe(0);
      expect(value(m, 'node_bootstrap_run_exit_code')).toBe(75);
      expect(value(m, 'node_bootstrap_run_error', error)).toBe(1);
      expect(value(m, 'node_bootstrap_phase_success', { phase: 'containerd-socket' })).toBe(0);
      // The phases after it did not run: 0, not absent (an alert on == 0 sees them), and no duration.
      expect(value(m, 'node_bootstrap_phase_success', { phase: 'cri' })).toBe(0);
      expect(value(m, 'node_bootstrap_phase_duration_seconds', { phase: 'cri' })).toBeUndefined();
      const served = parse(await exporter.scrape());
      expect(value(served, 'node_textfile_scrape_error')).toBe(0);
      expect(value(served, 'node_bootstrap_run_error', error)).toBe(1);
    },
  );

  step(
    "prefetch writes its own file next to the run's; node_exporter serves both without a clash",
    async () => {
      const small = `${ECR_HOST}/data/small:1`;
      const config = scenarioConfig(tb, {
        prefetch: { images: [small, tb.sandboxImage], jitter: 0, pressure: { some: 100, full: 100 } },
      });
      const state = freshStateDir(tb);
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const c = spawn(process.execPath, [BIN, 'prefetch', '--config', config, '--state-dir', state], {
          env: tb.env,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        c.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
        });
        c.stderr.setEncoding('utf8').on('data', (d: string) => {
          out += d;
        });
        c.once('close', (code) => resolve({ code, out }));
      });
      expect(r.code, r.out).toBe(0);
      const t = JSON.parse(readFileSync(join(state, 'prefetch.json'), 'utf8')) as PrefetchTimeline;
      expect(readdirSync(textDir).sort()).toEqual(['node_bootstrap.prom', 'node_bootstrap_prefetch.prom']);
      const file = join(textDir, 'node_bootstrap_prefetch.prom');
      expect(mode(file)).toBe('644');
      const m = parse(readFileSync(file, 'utf8'));
      expect(value(m, 'node_bootstrap_prefetch_images', { state: 'pulled' })).toBe(1);
      expect(value(m, 'node_bootstrap_prefetch_images', { state: 'present' })).toBe(1);
      expect(value(m, 'node_bootstrap_prefetch_images', { state: 'failed' })).toBe(0);
      const pulled = t.images.find((i) => i.state === 'pulled')!;
      expect(pulled.bytes).toBeGreaterThan(2_000_000);
      expect(value(m, 'node_bootstrap_prefetch_pulled_bytes')).toBe(pulled.bytes);
      expect(value(m, 'node_bootstrap_prefetch_run_exit_code')).toBe(0);
      expect(value(m, 'node_bootstrap_prefetch_pressure_wait_seconds')).toBe(
        t.images.reduce((s, i) => s + i.pressureWaitMs, 0) / 1000,
      );
      const served = parse(await exporter.scrape());
      expect(value(served, 'node_textfile_scrape_error')).toBe(0);
      expect(value(served, 'node_bootstrap_prefetch_pulled_bytes')).toBe(pulled.bytes);
      expect(value(served, 'node_bootstrap_run_exit_code')).toBe(75);
      for (const f of readdirSync(textDir).sort())
        report.push(`--- ${f}\n${readFileSync(join(textDir, f), 'utf8').trimEnd()}`);
    },
  );

  step('directories that do not exist are not created, and the run is not bothered', async () => {
    const config = scenarioConfig(tb, {
      report: { logDir: join(tb.dir, 'no-log') },
      metrics: { textfileDir: join(tb.dir, 'no-textfile') },
    });
    const r = await runBundle('run', { config, stateDir: freshStateDir(tb), env: tb.env });
    expect(r.code, explain(r)).toBe(0);
    expect(readdirSync(tb.dir)).not.toContain('no-log');
    expect(readdirSync(tb.dir)).not.toContain('no-textfile');
    expect(r.stderr).not.toMatch(/"level":"(warn|error)"/);
    // false turns them off even where the directory exists.
    const before = statSync(join(textDir, 'node_bootstrap.prom')).mtimeMs;
    const off = scenarioConfig(tb, { report: { logDir: false }, metrics: { textfileDir: false } });
    const r2 = await runBundle('run', { config: off, stateDir: freshStateDir(tb), env: tb.env });
    expect(r2.code, explain(r2)).toBe(0);
    expect(statSync(join(textDir, 'node_bootstrap.prom')).mtimeMs).toBe(before);
  });
});
