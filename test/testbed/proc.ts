/** Small process and polling helpers shared by the testbed parts. */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is test/testbed/proc.ts). */
export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CACHE_DIR = join(REPO, '.cache');

/** Run a command to completion; the error names the command and carries its stderr. */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args[0] ?? ''} failed: ${stderr.trim() || err.message}`));
        else resolve(stdout);
      },
    );
    // A command that exits without reading its input must not crash us with EPIPE.
    child.stdin?.on('error', () => {});
    if (opts.input === undefined) child.stdin?.end();
    else child.stdin?.end(opts.input);
  });
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Poll `probe` until it returns true; a throw counts as "not yet". `failIf` returning a message
 * ends the wait at once (e.g. the daemon exited).
 */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean> | boolean,
  opts: { timeoutMs?: number; intervalMs?: number; failIf?: () => string | undefined } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    const fatal = opts.failIf?.();
    if (fatal) throw new Error(`testbed: ${what}: ${fatal}`);
    try {
      if (await probe()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`testbed: timed out waiting for ${what}${why}`);
    }
    await sleep(opts.intervalMs ?? 20);
  }
}

/** Start a long-running daemon in its own process group, output appended to `logFile`. */
export function spawnDaemon(
  cmd: string,
  args: string[],
  logFile: string,
  env?: NodeJS.ProcessEnv,
): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env: env ?? process.env });
  child.unref();
  return child;
}

/**
 * The process exists and has not exited. An exited child not yet reaped (a zombie) still answers
 * kill(0), so read its state from /proc.
 */
export function isRunning(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** SIGTERM the process group, then SIGKILL after `graceMs`; resolves once the leader has exited. */
export async function stopProcess(pid: number | undefined, graceMs = 5_000): Promise<void> {
  if (!isRunning(pid)) return;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid!, sig);
    } catch {
      try {
        process.kill(pid!, sig);
      } catch {}
    }
  };
  if (graceMs > 0) signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isRunning(pid) && Date.now() < deadline) await sleep(10);
  if (isRunning(pid)) signal('SIGKILL');
  while (isRunning(pid)) await sleep(10);
}
