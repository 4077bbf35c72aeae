/**
 * The startup cache `install` makes at image-build time (payload.ts): the bundle's heavy parts
 * unpacked under /var/cache/node-bootstrap/<build id>/, each with a V8 code cache for the node that
 * runs `install`, made after training (commands/train.ts: a boot against stand-ins, in this process)
 * so that it holds what a boot runs compiled. A boot then reads plain files: no base64, no inflate,
 * and code its V8 need not compile. Other builds' folders and other V8s' caches are removed. V8
 * never makes the same cache twice, so caches already there that V8 takes for these sources are
 * kept: a second run writes nothing.
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Script } from 'node:vm';
import { writeFileAtomic } from '../adapters/node-files.js';
import { cacheFiles, openPayload, partFilename, partLoader, STARTUP_CACHE_DIR } from '../payload.js';

export interface CacheDone {
  /** Relative to the root. */
  path: string;
  action: 'wrote' | 'unchanged' | 'removed';
}

export interface StartupCache {
  done: CacheDone[];
  /** What the training before the code caches ran (commands/train.ts); unset when V8 took the ones there. */
  trained?: string;
  /** Set when there is nothing to cache (a development run from src/). */
  skipped?: string;
}

/** A regular 0644 file's bytes, or undefined. */
const ownFile = (path: string): Buffer | undefined => {
  try {
    const st = lstatSync(path);
    return st.isFile() && (st.mode & 0o777) === 0o644 ? readFileSync(path) : undefined;
  } catch {
    return undefined;
  }
};

const sameFile = (path: string, data: Buffer): boolean => ownFile(path)?.equals(data) ?? false;

/** The running bundle (this module is part of it), or undefined from src/. */
function bundleFile(): string | undefined {
  const self = fileURLToPath(import.meta.url);
  return self.endsWith('.mjs') ? self : undefined;
}

export async function writeStartupCache(root: string, file = bundleFile()): Promise<StartupCache> {
  const payload = file ? openPayload(file) : undefined;
  if (!file || !payload) return { done: [], skipped: 'not running from the bundle: nothing to unpack' };
  const { index } = payload;
  const dir = join(root, STARTUP_CACHE_DIR);
  // What the folder must hold; `null`: a code cache already there that V8 takes for that source.
  const wanted = new Map<string, Buffer | null>();
  let trained: string | undefined;
  try {
    const names = Object.keys(index.parts);
    const sources = new Map(names.map((n) => [n, payload.unpack(index.parts[n]!.src)]));
    for (const [name, src] of sources) wanted.set(cacheFiles(dir, index.id, name).src, src);
    // V8 does not make the same cache twice (what training compiles varies): keep one it accepts.
    const kept = names.every((name) => {
      const { src, cache } = cacheFiles(dir, index.id, name);
      if (!sameFile(src, sources.get(name)!)) return false;
      const cachedData = ownFile(cache);
      return (
        cachedData !== undefined &&
        !new Script(sources.get(name)!.toString('latin1'), { filename: partFilename(name), cachedData })
          .cachedDataRejected
      );
    });
    if (kept) for (const name of names) wanted.set(cacheFiles(dir, index.id, name).cache, null);
    else {
      const loader = partLoader(file, createRequire(file), pathToFileURL(file).href, undefined);
      trained = await (loader.part('heavy') as { train(): Promise<string> }).train();
      for (const name of names) loader.part(name);
      for (const [name, script] of loader.scripts)
        wanted.set(cacheFiles(dir, index.id, name).cache, script.createCachedData());
    }
  } finally {
    payload.close();
  }

  const done: CacheDone[] = [];
  const rel = (p: string) => relative(root, p);
  // Other builds' folders, and files of this one that are not wanted (another V8's cache).
  let entries: string[] = [];
  try {
    entries = readdirSync(dir);
  } catch {}
  for (const e of entries) {
    const path = join(dir, e);
    if (e !== index.id) {
      rmSync(path, { recursive: true, force: true });
      done.push({ path: rel(path), action: 'removed' });
    }
  }
  mkdirSync(join(dir, index.id), { recursive: true, mode: 0o755 });
  for (const e of readdirSync(join(dir, index.id))) {
    const path = join(dir, index.id, e);
    if (!wanted.has(path)) {
      rmSync(path, { recursive: true, force: true });
      done.push({ path: rel(path), action: 'removed' });
    }
  }
  for (const [path, data] of wanted) {
    if (data === null || sameFile(path, data)) done.push({ path: rel(path), action: 'unchanged' });
    else {
      writeFileAtomic(path, data, 0o644);
      done.push({ path: rel(path), action: 'wrote' });
    }
  }
  return { done, ...(trained ? { trained } : {}) };
}
