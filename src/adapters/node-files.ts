/**
 * The node's files, read as the node sees them: optionally under another root (a node image mounted
 * at build time), with symlinks followed INSIDE that root (an image's /etc/resolv.conf →
 * /run/systemd/resolve/stub-resolv.conf must not read the build host's file). Thin: no decisions.
 * Plus the two writes `resolv-conf` repair needs: atomic replace and remove.
 */
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { FileContent, FileReader } from '../core/file-reader.js';

/** Larger files are not read (kubelet itself refuses a resolv.conf over 10 MiB). */
const MAX_BYTES = 10 * 1024 * 1024 + 1;
const MAX_LINKS = 40;

export interface FsUsage {
  /** The directory measured (the nearest existing one on the way to what was asked). */
  path: string;
  totalBytes: number;
  /** Available to unprivileged users (what kubelet's image GC counts as free). */
  availableBytes: number;
}

export interface NodeFiles extends FileReader {
  readonly root: string;
  /** Filesystem usage of the filesystem holding path (or its nearest existing parent). */
  usage(path: string): FsUsage | undefined;
}

interface Resolved {
  /** The path inside the root after following symlinks (as far as it got). */
  inside: string;
  followed: boolean;
  code?: string;
}

export function createNodeFiles(root = '/'): NodeFiles {
  const host = (inside: string): string => (root === '/' ? inside : join(root, inside));

  const resolve = (path: string): Resolved => {
    const todo = path.split('/').filter(Boolean);
    let cur: string[] = [];
    let links = 0;
    let followed = false;
    while (todo.length > 0) {
      const part = todo.shift()!;
      if (part === '.') continue;
      if (part === '..') {
        cur.pop();
        continue;
      }
      const inside = `/${[...cur, part].join('/')}`;
      let isLink: boolean;
      try {
        isLink = lstatSync(host(inside)).isSymbolicLink();
      } catch (err) {
        return {
          inside: `/${[...cur, part, ...todo].join('/')}`,
          followed,
          code: (err as NodeJS.ErrnoException).code ?? 'EIO',
        };
      }
      if (!isLink) {
        cur.push(part);
        continue;
      }
      if (++links > MAX_LINKS) return { inside, followed, code: 'ELOOP' };
      followed = true;
      const target = readlinkSync(host(inside));
      if (target.startsWith('/')) cur = [];
      todo.unshift(...target.split('/').filter(Boolean));
    }
    return { inside: `/${cur.join('/')}`, followed };
  };

  const isLink = (path: string): boolean => {
    const parent = resolve(dirname(path));
    if (parent.code) return false;
    try {
      return lstatSync(host(join(parent.inside, basename(path)))).isSymbolicLink();
    } catch {
      return false;
    }
  };

  return {
    root,
    read(path): FileContent {
      const r = resolve(path);
      const resolved = r.followed ? { resolved: r.inside } : {};
      // Missing: say where it leads only when the path itself is a (dangling) symlink, not when a
      // parent directory is a link (/lib → usr/lib).
      if (r.code) return { ok: false, code: r.code, ...(isLink(path) ? { resolved: r.inside } : {}) };
      try {
        const st = statSync(host(r.inside));
        if (st.isDirectory()) return { ok: false, code: 'EISDIR', ...resolved };
        if (!st.isFile()) {
          if (r.inside === '/dev/null') return { ok: true, text: '', resolved: r.inside, bytes: 0 };
          return { ok: false, code: 'ENOTREG', ...resolved };
        }
        if (st.size > MAX_BYTES) return { ok: false, code: 'EFBIG', ...resolved };
        const buf = readFileSync(host(r.inside));
        return { ok: true, text: buf.toString('utf8'), resolved: r.inside, bytes: buf.length };
      } catch (err) {
        return { ok: false, code: (err as NodeJS.ErrnoException).code ?? 'EIO', ...resolved };
      }
    },
    list(dir) {
      const r = resolve(dir);
      if (r.code) return undefined;
      try {
        return readdirSync(host(r.inside)).sort();
      } catch {
        return undefined;
      }
    },
    exists(path) {
      const r = resolve(path);
      if (r.code) return false;
      try {
        statSync(host(r.inside));
        return true;
      } catch {
        return false;
      }
    },
    usage(path) {
      let inside = path;
      for (;;) {
        const r = resolve(inside);
        if (!r.code) {
          try {
            const s = statfsSync(host(r.inside));
            return {
              path: r.inside,
              totalBytes: s.blocks * s.bsize,
              availableBytes: s.bavail * s.bsize,
            };
          } catch {
            return undefined;
          }
        }
        if (inside === '/') return undefined;
        inside = dirname(inside);
      }
    },
  };
}

/**
 * Replace `path` atomically (temp file in the same directory + rename, so a reader sees the old file
 * or the new one), creating its directory. The temp file is hidden and lacks the final suffix:
 * node_exporter reads only *.prom, log collectors skip dotfiles.
 */
export function writeFileAtomic(path: string, text: string | Uint8Array, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text, { mode });
    chmodSync(tmp, mode); // the unit's UMask= must not narrow it
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Remove a file; true when it existed. */
export function removeFile(path: string): boolean {
  try {
    rmSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
