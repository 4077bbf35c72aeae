/**
 * Whether a running unit must be restarted to apply its rendered config: pure, over the unit's
 * start time and the config files' modification times (both CLOCK_REALTIME, ms since the epoch).
 *
 * A file changed after the daemon started was not read by it (containerd reads config.toml and its
 * imports only at start; kubelet its config file, drop-ins and flags only at start). A daemon that
 * is not running needs no restart: it will read the files when it starts.
 */

export interface FileTime {
  path: string;
  mtimeMs: number;
}

export type RestartVerdict =
  | { restart: false; why: string }
  | { restart: true; why: string; newer: FileTime[] };

const iso = (ms: number): string => new Date(ms).toISOString();

export function restartVerdict(
  unit: string,
  startedAtMs: number | undefined,
  files: readonly FileTime[],
): RestartVerdict {
  if (startedAtMs === undefined) return { restart: false, why: `${unit} is not running` };
  if (files.length === 0) return { restart: false, why: `no config file of ${unit} was found` };
  const newer = files.filter((f) => f.mtimeMs > startedAtMs).sort((a, b) => b.mtimeMs - a.mtimeMs);
  if (newer.length === 0)
    return {
      restart: false,
      why: `${unit} started at ${iso(startedAtMs)}, after its config last changed (${files.map((f) => f.path).join(', ')})`,
    };
  return {
    restart: true,
    newer,
    why: `${newer.map((f) => `${f.path} changed at ${iso(f.mtimeMs)}`).join(', ')}, after ${unit} started at ${iso(startedAtMs)}`,
  };
}
