/**
 * A dedicated cgroup per container, so that nspawn's `--keep-unit` subgroups (`payload/`,
 * `supervisor/`) and everything systemd creates under them stay in one tree we can kill and
 * remove, instead of landing in the cgroup of whoever ran the tests.
 *
 * Hierarchies: pure cgroup2 → `/sys/fs/cgroup`; hybrid (this testbed) → the `name=systemd` v1
 * hierarchy that nspawn and the container's systemd manage, plus the v2 `unified` one when mounted.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

const CG = '/sys/fs/cgroup';

/** The hierarchies a process has to be moved into; the first is the one nspawn manages. */
export function cgroupHierarchies(): string[] {
  if (existsSync(join(CG, 'cgroup.controllers'))) return [CG];
  const out: string[] = [];
  if (existsSync(join(CG, 'systemd', 'cgroup.procs'))) out.push(join(CG, 'systemd'));
  if (existsSync(join(CG, 'unified', 'cgroup.procs'))) out.push(join(CG, 'unified'));
  if (out.length === 0) throw new Error(`cgroup: neither cgroup2 nor a name=systemd hierarchy under ${CG}`);
  return out;
}

/** Create `<hierarchy>/<name>` in every hierarchy; returns the directories. */
export function createCgroup(name: string): string[] {
  if (!/^[\w.-]+$/.test(name)) throw new Error(`cgroup: bad name ${JSON.stringify(name)}`);
  return cgroupHierarchies().map((h) => {
    const dir = join(h, name);
    mkdirSync(dir, { recursive: true });
    return dir;
  });
}

/** Every directory of the tree, children before parents. */
function walk(dir: string, out: string[] = []): string[] {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) if (e.isDirectory()) walk(join(dir, e.name), out);
  out.push(dir);
  return out;
}

/** Pids of every process in the trees (best effort: cgroups vanish while we read). */
export function cgroupPids(dirs: string[]): number[] {
  const pids = new Set<number>();
  for (const root of dirs) {
    for (const dir of walk(root)) {
      let text = '';
      try {
        text = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
      } catch {}
      for (const line of text.split('\n')) if (line) pids.add(Number(line));
    }
  }
  return [...pids];
}

/** SIGKILL every process in the trees, synchronously (usable from a process 'exit' handler). */
export function killCgroupSync(dirs: string[]): number {
  const pids = cgroupPids(dirs);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  return pids.length;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Kill what is left in the trees and remove them, children first. rmdir fails with EBUSY until
 * the kernel has released the last (dying) member: retry until the deadline.
 */
export async function removeCgroup(dirs: string[], timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    killCgroupSync(dirs);
    const left: string[] = [];
    for (const root of dirs) {
      for (const dir of walk(root)) {
        try {
          rmdirSync(dir);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
        }
      }
    }
    if (left.length === 0) return;
    if (Date.now() > deadline) {
      const pids = cgroupPids(dirs);
      throw new Error(
        `cgroup: could not remove ${left.join(', ')} (pids still inside: ${pids.join(' ') || 'none'})`,
      );
    }
    await sleep(20);
  }
}
