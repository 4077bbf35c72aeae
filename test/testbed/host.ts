/**
 * What a testbed containerd leaves on the host, and how to take it back: tasks and their shims
 * (they outlive containerd), mounts under the testbed folder. Plus the overlayfs probe.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { run } from './proc.js';

/** Delete every task (pod sandbox, container) through containerd itself: shims then exit cleanly. */
export async function removeTasks(ctr: string, socket: string): Promise<void> {
  const base = ['--address', socket, '--connect-timeout', '2s'];
  const namespaces = (await run(ctr, [...base, 'namespaces', 'ls', '-q'])).split('\n').filter(Boolean);
  for (const ns of namespaces) {
    const ids = (await run(ctr, [...base, '-n', ns, 'tasks', 'ls', '-q'])).split('\n').filter(Boolean);
    for (const id of ids)
      await run(ctr, [...base, '-n', ns, 'tasks', 'delete', '--force', id]).catch(() => {});
  }
}

function processes(): { pid: number; ppid: number; argv: string[] }[] {
  const out = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.push({ pid: Number(name), ppid, argv });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** SIGKILL the shims serving `socket` and everything below them (the pause processes). */
export function killShims(socket: string): number {
  const procs = processes();
  const shims = procs.filter((p) => {
    const i = p.argv.findIndex((a) => a === '-address' || a === '--address');
    return basename(p.argv[0] ?? '').startsWith('containerd-shim') && i >= 0 && p.argv[i + 1] === socket;
  });
  const doomed = new Set(shims.map((p) => p.pid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs)
      if (doomed.has(p.ppid) && !doomed.has(p.pid)) {
        doomed.add(p.pid);
        grew = true;
      }
  }
  for (const pid of doomed) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  return shims.length;
}

/** Lazily unmount everything mounted at or below `dir`, deepest first. */
export function unmountUnder(dir: string): void {
  const decode = (s: string) =>
    s.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => decode(l.split(' ')[4] ?? ''))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of points) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
}

const overlayOk = new Map<string, boolean>();

/** overlayfs when the folder's filesystem can hold overlay layers (not on an overlay root), else native. */
export function snapshotterFor(dir: string): 'overlayfs' | 'native' {
  const parent = dirname(dir);
  let ok = overlayOk.get(parent);
  if (ok === undefined) {
    const probe = join(dir, '.overlay-probe');
    const [l, u, w, m] = ['l', 'u', 'w', 'm'].map((d) => join(probe, d)) as [string, string, string, string];
    for (const d of [l, u, w, m]) mkdirSync(d, { recursive: true });
    const opts = `lowerdir=${l},upperdir=${u},workdir=${w}`;
    ok = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', opts, m], { stdio: 'ignore' }).status === 0;
    if (ok) spawnSync('umount', [m], { stdio: 'ignore' });
    rmSync(probe, { recursive: true, force: true });
    overlayOk.set(parent, ok);
  }
  return ok ? 'overlayfs' : 'native';
}
