/** Filesystem/socket adapter for waiting on a unix socket: probe it, and wait for its directory to change. */
import { existsSync, watch } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';

export type SocketState = 'ready' | 'missing' | 'refused';

/** Connects once: a stale socket file (ECONNREFUSED) is "refused", not ready. */
export function probeSocket(path: string, signal: AbortSignal): Promise<SocketState> {
  return new Promise((resolve, reject) => {
    const sock = connect({ path, signal });
    sock.once('connect', () => {
      sock.destroy();
      resolve('ready');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      sock.destroy();
      if (signal.aborted) reject(signal.reason);
      else if (err.code === 'ENOENT' || err.code === 'ENOTDIR') resolve('missing');
      else if (err.code === 'ECONNREFUSED' || err.code === 'EAGAIN') resolve('refused');
      else reject(err);
    });
  });
}

/**
 * Resolves at the next change in the nearest existing directory on the way to `path` (inotify),
 * or after fallbackMs at the latest (a change can land between a probe and the watch).
 */
export function nextChange(path: string, signal: AbortSignal, fallbackMs: number): Promise<void> {
  let dir = dirname(path);
  while (!existsSync(dir) && dir !== dirname(dir)) dir = dirname(dir);
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const done = (err?: unknown): void => {
      clearTimeout(timer);
      watcher?.close();
      signal.removeEventListener('abort', onAbort);
      err === undefined ? resolve() : reject(err);
    };
    const onAbort = (): void => done(signal.reason);
    const timer = setTimeout(() => done(), fallbackMs);
    let watcher: ReturnType<typeof watch> | undefined;
    try {
      watcher = watch(dir, { persistent: false }, () => done());
      watcher.on('error', () => done());
    } catch {
      // not watchable (e.g. permission): the fallback timer still bounds the wait
    }
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
