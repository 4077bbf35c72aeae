/**
 * What the pure discovery functions (kubelet's settings, unit files) read through: a snapshot of a
 * node's files. The only implementation is adapters/node-files.ts (the real filesystem, optionally
 * under another root such as a mounted node image); the decisions stay pure over what it returns.
 */

export type FileContent =
  | {
      ok: true;
      text: string;
      /** The path after following symlinks (inside the root), e.g. /etc/resolv.conf → /run/…/stub-resolv.conf. */
      resolved: string;
      bytes: number;
    }
  | {
      ok: false;
      /** errno-style: ENOENT, EACCES, EISDIR, ELOOP, EFBIG (larger than the reader's limit), … */
      code: string;
      /** Where it stopped: the dangling symlink target, when it is one. */
      resolved?: string;
    };

export interface FileReader {
  /** A path as the node sees it (absolute). Symlinks are followed inside the reader's root. */
  read(path: string): FileContent;
  /** Entry names of a directory, sorted; undefined when it is not a readable directory. */
  list(dir: string): string[] | undefined;
  /** True when something (file, directory, dangling symlink excluded) exists at path. */
  exists(path: string): boolean;
}

/** One line: "ENOENT" → "does not exist". */
export function describeReadError(code: string): string {
  switch (code) {
    case 'ENOENT':
      return 'does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'is not readable (permission denied)';
    case 'EISDIR':
      return 'is a directory, not a file';
    case 'ELOOP':
      return 'is a symlink loop';
    case 'ENOTDIR':
      return 'does not exist (a parent is not a directory)';
    case 'ENOTREG':
      return 'is not a regular file';
    case 'EFBIG':
      return 'is too large to be read';
    default:
      return `cannot be read (${code})`;
  }
}
