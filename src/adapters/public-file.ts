/**
 * Files other programs read while we write them (node_exporter's textfile collector, the EKS log
 * collector): replaced atomically (a hidden temp file in the same directory, then rename, so a
 * reader sees the old file or the new one, never half of one), mode 0644 whatever the umask
 * (the units run with UMask=0077; node_exporter usually runs as its own user). The directory must
 * exist: it belongs to whoever reads it (node_exporter's package, the unit's LogsDirectory=), and a
 * missing one means nobody reads there, so nothing is written.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from './node-files.js';

export type PublishResult = 'written' | 'no-directory';

export function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** Writes `dir/name` atomically, mode 0644; 'no-directory' (nothing written) when dir is absent. */
export function publishFile(dir: string, name: string, text: string): PublishResult {
  if (!isDirectory(dir)) return 'no-directory';
  writeFileAtomic(join(dir, name), text, 0o644);
  return 'written';
}

/** Removes the oldest files matching `pattern` in dir (by mtime) beyond the `keep` newest. */
export function pruneFiles(dir: string, pattern: RegExp, keep: number): string[] {
  const files = readdirSync(dir)
    .filter((f) => pattern.test(f))
    .map((f) => ({ f, mtime: statSync(join(dir, f)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime || a.f.localeCompare(b.f));
  const gone = files.slice(Math.max(0, keep)).map((x) => x.f);
  for (const f of gone) rmSync(join(dir, f), { force: true });
  return gone;
}
