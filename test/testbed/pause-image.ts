/**
 * The pause image without Docker: an OCI layout holding busybox-static (entrypoint
 * `busybox sleep inf`, user 65535 like the real one), built once with umoci and cached under
 * .cache/, then pushed with skopeo to a testbed registry under any repo:tag.
 * The layout also holds `other`: same layer, another config, so another image ID (containerd 1.7
 * pins by image ID: an image that is not the sandbox image must not share its ID).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CACHE_DIR, run } from './proc.js';
import type { Registry } from './registry.js';

/** The registry the product resolves for us-west-2 (account 602401143452); tests redirect it. */
export const ECR_HOST = '602401143452.dkr.ecr.us-west-2.amazonaws.com';
export const PAUSE_REPO = 'eks/pause';
export const PAUSE_TAG = '3.10';
export const PAUSE_IMAGE = `${ECR_HOST}/${PAUSE_REPO}:${PAUSE_TAG}`;

/** Bump when the image content changes so old caches are not reused. */
const LAYOUT = join(CACHE_DIR, 'pause-oci-v2');
export type ImageVariant = 'pause' | 'other';

/** The cached OCI layout (`oci:<path>:pause`), built on first use (~0.2 s). Safe in parallel. */
export async function pauseLayout(): Promise<string> {
  if (existsSync(join(LAYOUT, 'index.json'))) return LAYOUT;
  await mkdir(CACHE_DIR, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'nb-pause-'));
  const layout = `${LAYOUT}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    const image = `${layout}:pause`;
    const bundle = join(work, 'bundle');
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', image]);
    await run('umoci', ['unpack', '--image', image, bundle]);
    await mkdir(join(bundle, 'rootfs', 'bin'));
    await run('cp', ['/bin/busybox', join(bundle, 'rootfs', 'bin', 'busybox')]);
    await run('umoci', ['repack', '--image', image, bundle]);
    // biome-ignore format: flag/value pairs
    await run('umoci', ['config', '--image', image, '--config.entrypoint', '/bin/busybox',
      '--config.cmd', 'sleep', '--config.cmd', 'inf', '--config.user', '65535:65535']);
    await run('umoci', [
      'config',
      '--image',
      image,
      '--tag',
      'other',
      '--config.label',
      'testbed.image=other',
    ]);
    await run('umoci', ['gc', '--layout', layout]);
    await rename(layout, LAYOUT).catch((err: NodeJS.ErrnoException) => {
      // Another process won the race: use its layout.
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    });
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(layout, { recursive: true, force: true });
  }
  return LAYOUT;
}

/** Push the pause image (or `other`) to `registry` as repo:tag; returns `<registry.host>/<repo>:<tag>`. */
export async function pushImage(
  registry: Registry,
  repo = PAUSE_REPO,
  tag = PAUSE_TAG,
  variant: ImageVariant = 'pause',
): Promise<string> {
  const layout = await pauseLayout();
  const dest = `${registry.host}/${repo}:${tag}`;
  // biome-ignore format: flag/value pairs
  await run('skopeo', ['copy', '--quiet', '--dest-authfile', registry.authFile, '--dest-cert-dir', registry.caDir,
    `oci:${layout}:${variant}`, `docker://${dest}`]);
  return dest;
}

/**
 * Save the pause image as a tar that `ctr images import` loads under `name` (the "baked archive"
 * fallback): docker-archive (default, with a RepoTag) or oci-archive (ref.name annotation).
 */
export async function exportPauseArchive(
  file: string,
  opts: { name?: string; format?: 'docker-archive' | 'oci-archive' } = {},
): Promise<string> {
  const layout = await pauseLayout();
  await rm(file, { force: true });
  const format = opts.format ?? 'docker-archive';
  await run('skopeo', [
    'copy',
    '--quiet',
    `oci:${layout}:pause`,
    `${format}:${file}:${opts.name ?? PAUSE_IMAGE}`,
  ]);
  return file;
}
