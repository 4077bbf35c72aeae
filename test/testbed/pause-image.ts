/**
 * The pause image without Docker: an OCI layout holding busybox-static (entrypoint
 * `busybox sleep inf`, user 65535 like the real one), built once with umoci and cached under
 * .cache/, then pushed with skopeo to a testbed registry under any repo:tag.
 * The layout also holds `other`: same layer, another config, so another image ID (containerd 1.7
 * pins by image ID: an image that is not the sandbox image must not share its ID).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
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

/**
 * An image made of `layers` layers of `layerMB` MB of random (incompressible) bytes each, as an OCI
 * layout (tag `data`) with uncompressed layers, so that pulling it is disk-bound rather than
 * CPU-bound. Cached under .cache/data-images/; distinct names give distinct content. Safe in parallel.
 */
export async function dataImageLayout(name: string, layers: number, layerMB: number): Promise<string> {
  const dir = join(CACHE_DIR, 'data-images', `v1-${name}-${layers}x${layerMB}`);
  if (existsSync(join(dir, 'index.json'))) return dir;
  const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
  const blobs = join(tmp, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const blob = async (file: string): Promise<{ digest: string; size: number }> => {
    const hex = (await run('sha256sum', [file])).split(' ')[0]!;
    const { size } = await stat(file);
    await rename(file, join(blobs, hex));
    return { digest: `sha256:${hex}`, size };
  };
  const json = async (value: unknown) => {
    const file = join(tmp, 'obj.json');
    await writeFile(file, JSON.stringify(value));
    return blob(file);
  };
  try {
    const layerDescs: { digest: string; size: number }[] = [];
    for (let i = 0; i < layers; i++) {
      const stage = join(tmp, 'stage');
      await mkdir(join(stage, 'data'), { recursive: true });
      await run('sh', ['-c', `head -c ${layerMB * 1024 * 1024} /dev/urandom > data/${name}-${i}.bin`], {
        cwd: stage,
        timeoutMs: 120_000,
      });
      const tar = join(tmp, 'layer.tar');
      await run('tar', ['-cf', tar, '--owner=0', '--group=0', '-C', stage, 'data'], { timeoutMs: 120_000 });
      await rm(stage, { recursive: true, force: true });
      layerDescs.push(await blob(tar));
    }
    const config = await json({
      architecture: 'amd64',
      os: 'linux',
      config: { Labels: { 'testbed.image': name } },
      rootfs: { type: 'layers', diff_ids: layerDescs.map((l) => l.digest) },
    });
    const manifestBody = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layerDescs.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
    };
    const manifest = await json(manifestBody);
    await writeFile(join(tmp, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(
      join(tmp, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            annotations: { 'org.opencontainers.image.ref.name': 'data' },
          },
        ],
      }),
    );
    await rename(tmp, dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** Push a data image (dataImageLayout) to `registry` as repo:tag; returns `<registry.host>/<repo>:<tag>`. */
export async function pushDataImage(
  registry: Registry,
  repo: string,
  tag: string,
  opts: { layers: number; layerMB: number; name?: string },
): Promise<string> {
  const layout = await dataImageLayout(opts.name ?? repo.replace(/\W+/g, '-'), opts.layers, opts.layerMB);
  const dest = `${registry.host}/${repo}:${tag}`;
  // biome-ignore format: flag/value pairs
  await run('skopeo', ['copy', '--quiet', '--dest-authfile', registry.authFile, '--dest-cert-dir', registry.caDir,
    `oci:${layout}:data`, `docker://${dest}`], { timeoutMs: 300_000 });
  return dest;
}
