/**
 * The bundle's loader of its heavy parts (scripts/build.mjs embeds it where lazy.ts expects the heavy
 * part, so lazy.ts still decides when). Each part's source and a V8 code cache made at build time sit
 * in a comment at the end of dist/node-bootstrap.mjs (so light commands only scan past them); an
 * index on the last line gives their byte ranges. `heavy` (the commands, gRPC, D-Bus) is loaded
 * first; the others only when its code first imports them: `aws` (the AWS SDK and the proxy agent,
 * for an ECR token) and `mime` (MIME user data), so a boot that finds its image present never reads
 * them. With the cache, V8 skips parsing and compiling what the build already compiled; a cache
 * from another V8 is not even read, and one V8 rejects only makes the start slower.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { inflateRawSync } from 'node:zlib';

/** The last line of the bundle: `//# nb-payload {…}`. Offsets and lengths are in bytes of the file. */
export const INDEX_PREFIX = '//# nb-payload ';

/** base64 of raw-deflated bytes at [offset, length] of the file, and their inflated length. */
export type Range = [offset: number, length: number, inflatedLength: number];

export interface PayloadIndex {
  /** process.versions.v8 of the node that made the caches. */
  v8: string;
  parts: Record<
    string,
    {
      /** The part's source (ASCII: decoded as latin1, a one-byte V8 string). */
      src: Range;
      /** The V8 code cache for exactly that source, or null. */
      cache: Range | null;
    }
  >;
}

/** How a part is compiled: a CommonJS function expression (scripts/build.mjs cjsFunction). */
export type PartFn = (
  module: { exports: unknown },
  require: NodeJS.Require,
  entryUrl: string,
  part: (name: string) => unknown,
) => void;

export const partFilename = (name: string): string => `node-bootstrap:${name}.cjs`;

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

/**
 * One range of the payload, inflated. With the output's size as the chunk size zlib fills a single
 * buffer: no list of 16 KiB chunks concatenated at the end (a third of the time, measured).
 */
function unpack(fd: number, [offset, length, inflatedLength]: Range): Buffer {
  const deflated = Buffer.from(read(fd, offset, length).toString('latin1'), 'base64');
  return inflateRawSync(deflated, { chunkSize: Math.max(64, inflatedLength + 1) });
}

export function loadHeavy(require: NodeJS.Require, entryUrl: string): unknown {
  const file = fileURLToPath(entryUrl);
  let index: PayloadIndex | undefined;
  const loaded = new Map<string, unknown>();

  const part = (name: string): unknown => {
    if (loaded.has(name)) return loaded.get(name);
    let source: string;
    let cachedData: Buffer | undefined;
    const fd = openSync(file, 'r');
    try {
      if (!index) {
        const size = fstatSync(fd).size;
        const tailLength = Math.min(size, 1024);
        const tail = read(fd, size - tailLength, tailLength).toString('latin1');
        const at = tail.lastIndexOf(INDEX_PREFIX);
        if (at < 0) throw new Error('node-bootstrap: the bundle has no heavy part (rebuild it)');
        index = JSON.parse(tail.slice(at + INDEX_PREFIX.length)) as PayloadIndex;
      }
      const entry = index.parts[name];
      if (!entry) throw new Error(`node-bootstrap: the bundle has no part "${name}" (rebuild it)`);
      source = unpack(fd, entry.src).toString('latin1');
      if (entry.cache && index.v8 === process.versions.v8) cachedData = unpack(fd, entry.cache);
    } finally {
      closeSync(fd);
    }
    // No importModuleDynamically: scripts/build.mjs turns the parts' import() of built-ins into
    // require(), since a script compiled from a code cache loses that callback on Node 20.
    const script = new Script(source, { filename: partFilename(name), cachedData });
    const module = { exports: {} };
    (script.runInThisContext() as PartFn)(module, require, entryUrl, part);
    loaded.set(name, module.exports);
    return module.exports;
  };

  return part('heavy');
}
