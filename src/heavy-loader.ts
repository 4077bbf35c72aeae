/**
 * The bundle's loader of its heavy part (scripts/build.mjs embeds it where lazy.ts expects the heavy
 * part, so lazy.ts still decides when). The heavy source and a V8 code cache made at build time sit
 * in a comment at the end of dist/node-bootstrap.mjs (so light commands only scan past them); an
 * index on the last line gives their byte ranges. With the cache, V8 skips parsing and compiling
 * what the build already compiled; a cache from another V8 is not even read, and one V8 rejects
 * only makes the start slower.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { inflateRawSync } from 'node:zlib';

/** The last line of the bundle: `//# nb-payload {…}`. Offsets and lengths are in bytes of the file. */
export const INDEX_PREFIX = '//# nb-payload ';
export const HEAVY_FILENAME = 'node-bootstrap:heavy.cjs';

export interface PayloadIndex {
  /** base64 of the raw-deflated heavy source (ASCII: decoded as latin1, a one-byte V8 string). */
  src: [offset: number, length: number];
  /** base64 of the raw-deflated V8 code cache for exactly that source, or null. */
  cache: [offset: number, length: number] | null;
  /** process.versions.v8 of the node that made the cache. */
  v8: string;
}

type HeavyFn = (module: { exports: unknown }, require: NodeJS.Require, entryUrl: string) => void;

function read(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) throw new Error('node-bootstrap: the bundle is truncated (heavy part)');
    done += n;
  }
  return buf;
}

const fromBase64 = (b: Buffer): Buffer => Buffer.from(b.toString('latin1'), 'base64');

export function loadHeavy(require: NodeJS.Require, entryUrl: string): unknown {
  const fd = openSync(fileURLToPath(entryUrl), 'r');
  let source: string;
  let cachedData: Buffer | undefined;
  try {
    const size = fstatSync(fd).size;
    const tailLength = Math.min(size, 512);
    const tail = read(fd, size - tailLength, tailLength).toString('latin1');
    const at = tail.lastIndexOf(INDEX_PREFIX);
    if (at < 0) throw new Error('node-bootstrap: the bundle has no heavy part (rebuild it)');
    const index = JSON.parse(tail.slice(at + INDEX_PREFIX.length)) as PayloadIndex;
    source = inflateRawSync(fromBase64(read(fd, ...index.src))).toString('latin1');
    if (index.cache && index.v8 === process.versions.v8)
      cachedData = inflateRawSync(fromBase64(read(fd, ...index.cache)));
  } finally {
    closeSync(fd);
  }
  // No importModuleDynamically: scripts/build.mjs turns the heavy part's import() of built-ins into
  // require(), since a script compiled from a code cache loses that callback on Node 20.
  const script = new Script(source, { filename: HEAVY_FILENAME, cachedData });
  const fn = script.runInThisContext() as HeavyFn;
  const module = { exports: {} };
  fn(module, require, entryUrl);
  return module.exports;
}
