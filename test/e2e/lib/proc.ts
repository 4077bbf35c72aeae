/** Small /proc helpers for the e2e harness. */
import { readdirSync, readFileSync } from 'node:fs';

/** Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, session, …]. */
function statFields(pid: number | string): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /, '')
      .split(' ');
  } catch {
    return undefined;
  }
}

/** Parent pid of a process, undefined when it is gone. */
export const procParent = (pid: number): number | undefined => {
  const ppid = statFields(pid)?.[1];
  return ppid === undefined ? undefined : Number(ppid);
};

/** Start time of a process (clock ticks since boot): with the pid, it names a process uniquely. */
export const procStartTime = (pid: number): string | undefined => statFields(pid)?.[19];

/**
 * SIGKILL every process of group `pgid` except `keep`.
 *
 * Why not the whole group: `nsenter -p` forks the command into the container's pid namespace, but
 * the command's parent stays nsenter, on the host. Kill nsenter first and the command is orphaned
 * to the HOST's init (here it reaps only every ~2 s), and it is no descendant of the container's
 * PID 1: at poweroff systemd-shutdown signals it, then waits for a SIGCHLD that never comes, for
 * its full 10 s timeout. Killing only the command lets nsenter reap it and exit.
 */
export function killGroupExcept(pgid: number, keep: number): number {
  let n = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === keep) continue;
    const f = statFields(entry);
    if (f && Number(f[2]) === pgid) {
      try {
        process.kill(Number(entry), 'SIGKILL');
        n++;
      } catch {}
    }
  }
  return n;
}
