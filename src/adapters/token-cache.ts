/**
 * The ECR token, cached in <stateDir>/ecr-token-<registryId>.json so that a re-run within its
 * lifetime does not call ECR again. The file is created 0600 (never wider, not even for an instant)
 * and replaced atomically; a file that is corrupt, expired, not ours or readable by others is
 * ignored and rewritten. Its content is never logged nor put in an error.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BootError } from '../errors.js';
import type { EcrToken } from './ecr.js';

export const DEFAULT_MARGIN_MS = 30 * 60_000;

export interface TokenCache {
  /** The cached token when still valid for at least the margin; otherwise undefined. */
  get(registryId: string): Promise<EcrToken | undefined>;
  put(registryId: string, token: EcrToken): Promise<void>;
  /** get(), or fetch() then put(). */
  getOrFetch(
    registryId: string,
    fetch: () => Promise<EcrToken>,
  ): Promise<{ token: EcrToken; cached: boolean }>;
}

export interface TokenCacheOptions {
  dir: string;
  /** A token is reused until expiresAt - marginMs. Default 30 min. */
  marginMs?: number;
  now?: () => number;
}

interface Stored {
  registryId: string;
  username: string;
  password: string;
  expiresAt: string;
  proxyEndpoint: string;
}

const fileName = (registryId: string): string => {
  // An ECR token is good in the region that issued it only: the key is "<account>" or "<account>.<region>".
  if (!/^\d{12}(\.[a-z]{2,5}(-[a-z]+)+-\d+)?$/.test(registryId))
    throw new BootError(
      'CONFIG_INVALID',
      `"${registryId}" is not an ECR registry id (12 digits, optionally .<region>)`,
      {
        hint: 'fix the sandbox image reference: its host must be <account>.dkr.ecr.<region>.amazonaws.com',
      },
    );
  return `ecr-token-${registryId}.json`;
};

/** Only a regular file owned by us and closed to group and others is trusted. */
async function trusted(path: string): Promise<boolean> {
  try {
    const st = await lstat(path);
    const ours = process.getuid === undefined || st.uid === process.getuid();
    return st.isFile() && ours && (st.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

function parse(text: string, registryId: string): EcrToken | undefined {
  try {
    const s = JSON.parse(text) as Partial<Stored>;
    const expiresAt = new Date(s.expiresAt ?? NaN);
    const fields = [s.username, s.password, s.proxyEndpoint];
    if (s.registryId !== registryId || Number.isNaN(expiresAt.getTime())) return undefined;
    if (!fields.every((f) => typeof f === 'string' && f.length > 0)) return undefined;
    return { username: s.username!, password: s.password!, expiresAt, proxyEndpoint: s.proxyEndpoint! };
  } catch {
    return undefined;
  }
}

export function createTokenCache(opts: TokenCacheOptions): TokenCache {
  const margin = opts.marginMs ?? DEFAULT_MARGIN_MS;
  const now = opts.now ?? Date.now;

  const get = async (registryId: string): Promise<EcrToken | undefined> => {
    const path = join(opts.dir, fileName(registryId));
    if (!(await trusted(path))) return undefined;
    const token = parse(await readFile(path, 'utf8').catch(() => ''), registryId);
    return token && token.expiresAt.getTime() - margin > now() ? token : undefined;
  };

  const put = async (registryId: string, token: EcrToken): Promise<void> => {
    const path = join(opts.dir, fileName(registryId));
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    const stored: Stored = { registryId, ...token, expiresAt: token.expiresAt.toISOString() };
    try {
      await mkdir(opts.dir, { recursive: true, mode: 0o700 });
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(JSON.stringify(stored));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new BootError('STATE_DIR_UNWRITABLE', `cannot write the ECR token cache ${path} (${code})`, {
        hint: `make ${opts.dir} a directory writable by root (a tmpfs under /run)`,
      });
    }
  };

  return {
    get,
    put,
    async getOrFetch(registryId, fetch) {
      const hit = await get(registryId);
      if (hit) return { token: hit, cached: true };
      const token = await fetch();
      await put(registryId, token);
      return { token, cached: false };
    },
  };
}
