/**
 * Image archive import through containerd's own client, `ctr` (shipped with containerd): streaming
 * an archive into the content store and unpacking it is what ctr already does well.
 */
import { execFile } from 'node:child_process';

export interface ImportOptions {
  socket: string;
  namespace: string;
  /** The CRI plugin's snapshotter, so the runtime finds the unpacked image. */
  snapshotter?: string;
  /** The `ctr` binary; default from PATH. */
  ctr?: string;
}

/** Imports an OCI or docker archive; returns the image names it created. */
export function importArchive(file: string, opts: ImportOptions, signal: AbortSignal): Promise<string[]> {
  const args = ['--address', opts.socket, '--namespace', opts.namespace, 'images', 'import'];
  if (opts.snapshotter) args.push('--snapshotter', opts.snapshotter);
  args.push(file);
  return new Promise((resolve, reject) => {
    execFile(opts.ctr ?? 'ctr', args, { signal, timeout: 120_000 }, (err, stdout, stderr) => {
      if (signal.aborted) return reject(signal.reason);
      if (err) return reject(new Error(`ctr images import ${file}: ${(stderr || err.message).trim()}`));
      // "unpacking <name> (sha256:…)...done" per image
      const names = [...stdout.matchAll(/^unpacking (\S+) \(sha256:[0-9a-f]+\)/gm)].map((m) => m[1]!);
      resolve(names);
    });
  });
}
