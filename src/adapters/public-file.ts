/**
 * Files other programs read while we write them (node_exporter's textfile collector, the EKS log
 * collector): replaced atomically (a hidden temp file in the same directory, then rename, so a
 * reader sees the old file or the new one, never half of one), mode 0644 whatever the umask
 * (the units run with UMask=0077; node_exporter usually runs as its own user). The directory must
 * exist: it belongs to whoever reads it (node_exporter's package, the unit's LogsDirectory=), and a
 * missing one means nobody reads there, so nothing is written.
 */
import { chmodSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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
  const file = join(dir, name);
  // Hidden and without the final suffix: node_exporter reads only *.prom, log collectors skip dotfiles.
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text, { mode: 0o644 });
    chmodSync(tmp, 0o644);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
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
