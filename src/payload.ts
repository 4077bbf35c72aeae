/**
 * The bundle's payload: the heavy parts (scripts/build.mjs) as base64 of raw-deflated bytes in a
 * comment at the end of dist/node-bootstrap.mjs, and an index on the very last line.
 * `node-bootstrap install` (at image-build time) unpacks them into the startup cache,
 * /var/cache/node-bootstrap/<id>/, with V8 code caches made there by the node that will run them
 * (a cache fits only the V8 that made it); a run reads the parts from there when they are present
 * (no base64, no inflate, compiled from the cache), else from the bundle, compiling them.
 * Only node:fs, node:path, node:vm and node:zlib: the light commands carry this module.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { inflateRawSync } from 'node:zlib';

/** The last line of the bundle: `//# nb-payload {…}`. Offsets and lengths are in bytes of the file. */
export const INDEX_PREFIX = '//# nb-payload ';
/** Where `install` unpacks the parts (FHS: data a program can make again). */
export const STARTUP_CACHE_DIR = '/var/cache/node-bootstrap';

/** base64 of raw-deflated bytes at [offset, length] of the file, and their inflated length. */
export type Range = [offset: number, length: number, inflatedLength: number];

export interface PayloadIndex {
  /** A hash of the parts' sources: the startup cache's folder for this build. */
  id: string;
  /** Each part's source (ASCII: decoded as latin1, a one-byte V8 string). */
  parts: Record<string, { src: Range }>;
}

/** How a part is compiled: a CommonJS function expression (scripts/build.mjs cjsFunction). */
export type PartFn = (
  module: { exports: unknown },
  require: NodeJS.Require,
  entryUrl: string,
  part: (name: string) => unknown,
) => void;

export const partFilename = (name: string): string => `node-bootstrap:${name}.cjs`;
/** The startup cache's files of one part: its source, and its code cache for this V8. */
export const cacheFiles = (dir: string, id: string, name: string, v8 = process.versions.v8) => ({
  src: join(dir, id, `${name}.js`),
  cache: join(dir, id, `${name}.v8-${v8}.cache`),
});

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

/** The bundle's payload, opened: its index and its parts, inflated on demand. */
export interface Payload {
  index: PayloadIndex;
  /** One range, inflated. */
  unpack(range: Range): Buffer;
  close(): void;
}

/** undefined when the file has no payload (a development build run from src/). */
export function openPayload(file: string): Payload | undefined {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const tailLength = Math.min(size, 2048);
    const tail = read(fd, size - tailLength, tailLength).toString('latin1');
    const at = tail.lastIndexOf(INDEX_PREFIX);
    if (at < 0) {
      closeSync(fd);
      return undefined;
    }
    const index = JSON.parse(tail.slice(at + INDEX_PREFIX.length)) as PayloadIndex;
    return {
      index,
      // With the output's size as the chunk size zlib fills a single buffer: no list of 16 KiB
      // chunks concatenated at the end (a third of the time, measured).
      unpack: ([offset, length, inflatedLength]) =>
        inflateRawSync(Buffer.from(read(fd, offset, length).toString('latin1'), 'base64'), {
          chunkSize: Math.max(64, inflatedLength + 1),
        }),
      close: () => closeSync(fd),
    };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * A startup cache file, or undefined. Only a file nobody but root (or this user) could have written
 * is taken: it becomes code running as this process.
 */
function trusted(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    const uid = process.getuid?.() ?? 0;
    if (!st.isFile() || (st.uid !== 0 && st.uid !== uid) || (st.mode & 0o022) !== 0) return undefined;
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * How the startup cache under `dir` holds each part of this bundle, as a boot would read it: the
 * source as the bundle has it, and a code cache this V8 takes for it (`check` reports it).
 */
export function startupCacheState(
  file: string,
  dir: string,
):
  | { name: string; source: 'same' | 'missing' | 'different'; cache: 'accepted' | 'rejected' | 'missing' }[]
  | undefined {
  const payload = openPayload(file);
  if (!payload) return undefined;
  try {
    return Object.entries(payload.index.parts).map(([name, entry]) => {
      const files = cacheFiles(dir, payload.index.id, name);
      const have = trusted(files.src);
      const want = payload.unpack(entry.src);
      const source = !have ? 'missing' : have.equals(want) ? 'same' : 'different';
      const cachedData = trusted(files.cache);
      const cache = !cachedData
        ? 'missing'
        : new Script(want.toString('latin1'), { filename: partFilename(name), cachedData }).cachedDataRejected
          ? 'rejected'
          : 'accepted';
      return { name, source, cache };
    });
  } finally {
    payload.close();
  }
}

/** Where each part was read from, for the record (status.json's `startup`). */
export interface PartLoad {
  name: string;
  source: 'startup-cache' | 'bundle';
  codeCache: 'startup-cache' | 'none' | 'rejected';
  ms: number;
}

export interface PartLoader {
  part(name: string): unknown;
  /** The compiled scripts (for `install`, which makes their code caches). */
  scripts: Map<string, Script>;
  loads: PartLoad[];
}

/**
 * Loads parts on demand: compiles each once (with a code cache when one fits this V8) and runs its
 * module initialisation, handing it `part` for the parts it imports.
 */
export function partLoader(
  file: string,
  require: NodeJS.Require,
  entryUrl: string,
  cacheDir: string | undefined,
): PartLoader {
  let payload: Payload | undefined;
  const bundle = (): Payload => {
    payload ??= openPayload(file);
    if (!payload) throw new Error('node-bootstrap: the bundle has no heavy part (rebuild it)');
    return payload;
  };
  const loaded = new Map<string, unknown>();
  const scripts = new Map<string, Script>();
  const loads: PartLoad[] = [];

  const part = (name: string): unknown => {
    if (loaded.has(name)) return loaded.get(name);
    const t0 = performance.now();
    const { index } = bundle();
    const entry = index.parts[name];
    if (!entry) throw new Error(`node-bootstrap: the bundle has no part "${name}" (rebuild it)`);
    const files = cacheDir ? cacheFiles(cacheDir, index.id, name) : undefined;
    let source = files && trusted(files.src)?.toString('latin1');
    const load: PartLoad = { name, source: 'startup-cache', codeCache: 'none', ms: 0 };
    if (source?.length !== entry.src[2]) {
      source = bundle().unpack(entry.src).toString('latin1');
      load.source = 'bundle';
    }
    const cachedData = files && trusted(files.cache);
    if (cachedData) load.codeCache = 'startup-cache';
    // No importModuleDynamically: scripts/build.mjs turns the parts' import() of built-ins into
    // require(), since a script compiled from a code cache loses that callback on Node 20.
    const script = new Script(source, { filename: partFilename(name), cachedData });
    if (script.cachedDataRejected) load.codeCache = 'rejected';
    scripts.set(name, script);
    const module = { exports: {} };
    (script.runInThisContext() as PartFn)(module, require, entryUrl, part);
    loaded.set(name, module.exports);
    load.ms = Math.round((performance.now() - t0) * 10) / 10;
    loads.push(load);
    return module.exports;
  };
  return { part, scripts, loads };
}

/** The parts this process loaded so far (empty when run from src/, unbundled). */
export function startupLoads(): PartLoad[] {
  return ((globalThis as Record<symbol, unknown>)[Symbol.for('node-bootstrap.startup-loads')] ??
    []) as PartLoad[];
}
