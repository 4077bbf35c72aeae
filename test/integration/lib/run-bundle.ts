/**
 * Drives the shipped artifact (dist/node-bootstrap.mjs) as a child process against a testbed, the
 * way systemd would: asynchronously (the ECR and IMDS emulators answer from the test process, so a
 * synchronous spawn would deadlock them), with the testbed's whole environment, and reads back what
 * an operator would: exit code, the verdict line, the timeline in the state dir.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import type { PhaseName } from '../../../src/runner/phase.js';
import type { PhaseRecord, RunStatus } from '../../../src/runner/status.js';
import type { Testbed } from '../../testbed/index.js';

export const REPO = join(import.meta.dirname, '..', '..', '..');
export const BIN = join(REPO, 'dist', 'node-bootstrap.mjs');
/** What the integration tests skip: there is no systemd here and kubelet is not theirs. */
export const SKIP = 'containerd-unit,resolv-conf,kubelet';

export interface BundleResult {
  /** Exit code; null when the child died of a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The last `node-bootstrap: …` line on stdout ('' when there is none). */
  verdict: string;
  /** Wall time of the child, spawn to exit. */
  ms: number;
  /** The timeline file as written (status.json for run, guard.json for guard), '' when absent. */
  timelineText: string;
  timeline?: RunStatus;
  /** One phase record of the timeline (fails loudly when absent). */
  phase(name: PhaseName): PhaseRecord;
}

export interface Running {
  child: ChildProcess;
  done: Promise<BundleResult>;
}

export interface BundleOptions {
  config: string;
  stateDir: string;
  env: Record<string, string>;
  /** Default SKIP for run; guard takes no --skip. */
  skip?: string;
  /** More arguments (e.g. --observe). */
  args?: string[];
}

/** Starts `node-bootstrap run|guard` and returns at once; `done` settles when it exits. */
export function startBundle(command: 'run' | 'guard', o: BundleOptions): Running {
  const args = [BIN, command, '--config', o.config, '--state-dir', o.stateDir];
  if (command === 'run') args.push('--skip', o.skip ?? SKIP);
  args.push(...(o.args ?? []));
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const done = new Promise<BundleResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const file = join(o.stateDir, command === 'run' ? 'status.json' : 'guard.json');
      const timelineText = existsSync(file) ? readFileSync(file, 'utf8') : '';
      const timeline = timelineText ? (JSON.parse(timelineText) as RunStatus) : undefined;
      const verdicts = stdout.split('\n').filter((l) => l.startsWith('node-bootstrap: '));
      resolve({
        code,
        signal,
        stdout,
        stderr,
        verdict: verdicts.at(-1) ?? '',
        ms: Math.round(performance.now() - t0),
        timelineText,
        timeline,
        phase(name) {
          const p = timeline?.phases.find((x) => x.name === name);
          if (!p) throw new Error(`no phase ${name} in ${file}:\n${timelineText}\nstderr:\n${stderr}`);
          return p;
        },
      });
    });
  });
  return { child, done };
}

export const runBundle = (command: 'run' | 'guard', o: BundleOptions): Promise<BundleResult> =>
  startBundle(command, o).done;

/** A readable summary for assertion messages: verdict, then the log's warnings and errors. */
export function explain(r: BundleResult): string {
  const lines = r.stderr
    .split('\n')
    .filter((l) => /"level":"(warn|error|fatal)"/.test(l))
    .map((l) => {
      try {
        const j = JSON.parse(l) as { phase?: string; code?: string; msg?: string };
        return `  ${j.phase ?? ''} ${j.code ?? ''} ${j.msg ?? ''}`;
      } catch {
        return `  ${l}`;
      }
    });
  return `exit ${r.code} in ${r.ms} ms: ${r.verdict || '(no verdict)'}\n${lines.join('\n')}`;
}

/** The error of the failed phase in the timeline, with its name. */
export function failure(r: BundleResult): { phase: string; code: string; message: string; hint: string } {
  const p = r.timeline?.phases.find((x) => x.result === 'failed');
  if (!p?.error) throw new Error(`no failed phase:\n${explain(r)}`);
  return { phase: p.name, ...p.error };
}

/** Every place a secret could leak to: stdout, stderr (the journal), the timeline. */
export function leaks(r: BundleResult, secrets: string[]): string[] {
  const found: string[] = [];
  for (const s of secrets.filter((x) => x.length >= 8))
    for (const [where, text] of [
      ['stdout', r.stdout],
      ['stderr', r.stderr],
      ['timeline', r.timelineText],
    ] as const)
      if (text.includes(s)) found.push(`${where} contains ${s.slice(0, 6)}…`);
  return found;
}

/** The registry password as ECR hands it out: base64("AWS:<password>"). */
export const ecrToken = (password: string): string => Buffer.from(`AWS:${password}`).toString('base64');

/** The secrets of a testbed: the registry password (and its token form), the IMDS role credentials. */
export function testbedSecrets(tb: Testbed): string[] {
  const out: string[] = [];
  if (tb.registry) out.push(tb.registry.password, ecrToken(tb.registry.password));
  if (tb.imds) out.push(tb.imds.credentials.secretAccessKey, tb.imds.credentials.sessionToken);
  return out;
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const isObj = (x: unknown): x is Record<string, unknown> =>
    typeof x === 'object' && x !== null && !Array.isArray(x);
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObj(b) && isObj(v) ? merge(b, v) : v;
  }
  return out;
}

let configs = 0;
/**
 * The testbed's config.yaml with `over` deep-merged, in a folder of its own (so that no config.d
 * next to it is read). Returns the file.
 */
export function scenarioConfig(tb: Testbed, over: Record<string, unknown>): string {
  const base = parse(readFileSync(tb.configFile, 'utf8')) as Record<string, unknown>;
  const dir = join(tb.dir, `cfg-${++configs}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'config.yaml');
  writeFileSync(file, stringify(merge(base, over)));
  return file;
}

/** A fresh, empty state dir inside the testbed (removed with it). */
export const freshStateDir = (tb: Testbed): string => mkdtempSync(join(tb.dir, 'state-'));

/** Polls until `probe` holds or `ms` passed; returns whether it held. */
export async function until(probe: () => boolean, ms: number, stepMs = 10): Promise<boolean> {
  const end = performance.now() + ms;
  while (!probe()) {
    if (performance.now() > end) return false;
    await sleep(stepMs);
  }
  return true;
}

/** The timeline's phase `name` as currently written (null while absent or unreadable). */
export function phaseNow(stateDir: string, name: PhaseName, file = 'status.json'): PhaseRecord | null {
  try {
    const st = JSON.parse(readFileSync(join(stateDir, file), 'utf8')) as RunStatus;
    return st.phases.find((p) => p.name === name) ?? null;
  } catch {
    return null;
  }
}

/**
 * Builds dist/ when it is missing (npm test builds before vitest; a bare `npx vitest` may not have).
 * Several test files may ask at once: one builds, the others wait for it.
 */
export async function ensureBuilt(): Promise<void> {
  if (existsSync(BIN)) return;
  const lock = join(REPO, '.cache', 'dist-build.lock');
  try {
    mkdirSync(join(REPO, '.cache'), { recursive: true });
    mkdirSync(lock);
  } catch {
    if (!(await until(() => existsSync(BIN) && !existsSync(lock), 120_000, 100)))
      throw new Error(`waited 120 s for another test file to build ${BIN}`);
    return;
  }
  try {
    await new Promise<void>((resolve, reject) =>
      execFile('npm', ['run', '-s', 'build'], { cwd: REPO, timeout: 120_000 }, (err, _out, stderr) =>
        err ? reject(new Error(`npm run build failed: ${stderr || err.message}`)) : resolve(),
      ),
    );
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
