/**
 * The startup cache `install` makes at image-build time (payload.ts): the bundle's heavy parts
 * unpacked under /var/cache/node-bootstrap/<build id>/, each with a V8 code cache for the node that
 * runs `install`. When that node's V8 made the bundle's own caches (trained at build time) they are
 * copied; otherwise the parts are compiled here and trained as the build trains them (commands/train.ts:
 * a boot against stand-ins, in this process) before their caches are made.
 * A boot then reads plain files: no base64, no inflate, and a cache its V8 accepts. Other builds'
 * folders are removed; a second run with nothing to change writes nothing.
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writeFileAtomic } from '../adapters/node-files.js';
import { cacheFiles, openPayload, partLoader, STARTUP_CACHE_DIR } from '../payload.js';

export interface CacheDone {
  /** Relative to the root. */
  path: string;
  action: 'wrote' | 'unchanged' | 'removed';
}

export interface StartupCache {
  done: CacheDone[];
  /** Where the code caches came from: the bundle's (trained at build time) or made here. */
  codeCaches: 'bundle' | 'made here' | 'none';
  /** What the training here ran (commands/train.ts), when the caches were made here. */
  trained?: string;
  /** Set when there is nothing to cache (a development run from src/). */
  skipped?: string;
}

const sameFile = (path: string, data: Buffer): boolean => {
  try {
    const st = lstatSync(path);
    return st.isFile() && (st.mode & 0o777) === 0o644 && readFileSync(path).equals(data);
  } catch {
    return false;
  }
};

/** The running bundle (this module is part of it), or undefined from src/. */
function bundleFile(): string | undefined {
  const self = fileURLToPath(import.meta.url);
  return self.endsWith('.mjs') ? self : undefined;
}

export async function writeStartupCache(root: string, file = bundleFile()): Promise<StartupCache> {
  const payload = file ? openPayload(file) : undefined;
  if (!file || !payload)
    return { done: [], codeCaches: 'none', skipped: 'not running from the bundle: nothing to unpack' };
  const { index } = payload;
  const dir = join(root, STARTUP_CACHE_DIR);
  const wanted = new Map<string, Buffer>();
  let codeCaches: StartupCache['codeCaches'] = 'bundle';
  let trained: string | undefined;
  try {
    const names = Object.keys(index.parts);
    const own = index.v8 === process.versions.v8 && names.every((n) => index.parts[n]?.cache);
    for (const name of names)
      wanted.set(cacheFiles(dir, index.id, name).src, payload.unpack(index.parts[name]!.src));
    if (own) {
      for (const name of names)
        wanted.set(cacheFiles(dir, index.id, name).cache, payload.unpack(index.parts[name]!.cache!));
    } else {
      codeCaches = 'made here';
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
    if (sameFile(path, data)) done.push({ path: rel(path), action: 'unchanged' });
    else {
      writeFileAtomic(path, data, 0o644);
      done.push({ path: rel(path), action: 'wrote' });
    }
  }
  return { done, codeCaches, ...(trained ? { trained } : {}) };
}
