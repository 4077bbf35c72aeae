/**
 * containerd's rendered config read as containerd reads it: schema v1/v2/v3, imports (relative,
 * glob, cycles), plugin sections replaced whole, defaults. Real files under a temp root, read
 * through node-files (the adapter the product uses).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createNodeFiles } from '../../src/adapters/node-files.js';
import { globFiles, readContainerdConfig } from '../../src/core/containerd-config.js';
import { BootError } from '../../src/errors.js';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function node(tree: Record<string, string>) {
  const root = mkdtempSync(join(tmpdir(), 'nb-ctrdcfg-'));
  roots.push(root);
  for (const [path, content] of Object.entries(tree)) {
    mkdirSync(join(root, dirname(path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return createNodeFiles(root);
}

const F = '/etc/containerd/config.toml';
const PAUSE = '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10';

/** What nodeadm renders on AL2023 (schema 2, containerd 1.7), shortened. */
const AL2023_V2 = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri".containerd]
default_runtime_name = "runc"
discard_unpacked_layers = true

[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "localhost/kubernetes/pause"

[plugins."io.containerd.grpc.v1.cri".registry]
config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
`;

/** The same in schema 3 (containerd 2.x). */
const AL2023_V3 = `version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.images']
snapshotter = "overlayfs"
discard_unpacked_layers = true

[plugins.'io.containerd.cri.v1.images'.pinned_images]
sandbox = "localhost/kubernetes/pause:latest"

[plugins.'io.containerd.cri.v1.images'.registry]
config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
`;

describe('readContainerdConfig: the schema versions', () => {
  it('v2 (containerd 1.x): sandbox_image, config_path, root, state, socket, each with where it came from', () => {
    const c = readContainerdConfig(node({ [F]: AL2023_V2 }));
    expect(c).toMatchObject({
      files: [F],
      version: 2,
      root: { value: '/var/lib/containerd', where: `root in ${F}` },
      state: { value: '/run/containerd', where: `state in ${F}` },
      address: { value: '/run/containerd/containerd.sock', where: `[grpc] address in ${F}` },
      sandboxImage: {
        value: 'localhost/kubernetes/pause',
        where: `sandbox_image under [plugins."io.containerd.grpc.v1.cri"] in ${F}`,
      },
      configPath: { value: '/etc/containerd/certs.d:/etc/docker/certs.d' },
      criDisabled: false,
      notes: [],
    });
  });

  it('v3 (containerd 2.x): pinned_images.sandbox and registry.config_path of the images plugin', () => {
    const c = readContainerdConfig(node({ [F]: AL2023_V3 }));
    expect(c).toMatchObject({
      version: 3,
      sandboxImage: {
        value: 'localhost/kubernetes/pause:latest',
        where: `pinned_images.sandbox under [plugins."io.containerd.cri.v1.images"] in ${F}`,
      },
      configPath: { value: '/etc/containerd/certs.d:/etc/docker/certs.d' },
      snapshotter: { value: 'overlayfs' },
      notes: [],
    });
  });

  it.each([
    [
      'a v2 sandbox_image in a v3 file is ignored by containerd 2.x, and said so',
      `version = 3\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "${PAUSE}"\n`,
      undefined,
      /sandbox_image under \[plugins\."io\.containerd\.grpc\.v1\.cri"\] .* is ignored in a version 3 config/,
    ],
    [
      'a v3 section in a v2 file is ignored, and said so',
      `version = 2\n[plugins."io.containerd.cri.v1.images".pinned_images]\nsandbox = "${PAUSE}"\n`,
      undefined,
      /is a version 3 section but the config is version 2/,
    ],
    [
      'no version: schema 1, the short plugin name `cri`',
      `[plugins.cri]\nsandbox_image = "${PAUSE}"\n`,
      PAUSE,
      undefined,
    ],
    [
      'an empty sandbox_image is containerd’s default',
      `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = ""\n`,
      undefined,
      undefined,
    ],
  ])('%s', (_name, text, sandbox, note) => {
    const c = readContainerdConfig(node({ [F]: text }));
    expect(c.sandboxImage?.value).toBe(sandbox);
    if (note) expect(c.notes).toEqual([expect.stringMatching(note)]);
    else expect(c.notes).toEqual([]);
  });

  it('no config file: containerd runs on its defaults', () => {
    const c = readContainerdConfig(node({}));
    expect(c).toEqual({
      file: F,
      files: [],
      version: 1,
      root: { value: '/var/lib/containerd', where: "containerd's default root" },
      state: { value: '/run/containerd', where: "containerd's default state" },
      address: { value: '/run/containerd/containerd.sock', where: "containerd's default [grpc] address" },
      criDisabled: false,
      notes: [],
    });
  });

  it.each([
    ['v2 full id', 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n', true],
    ['v1 short name', 'disabled_plugins = ["cri"]\n', true],
    ['another plugin', 'version = 2\ndisabled_plugins = ["io.containerd.snapshotter.v1.zfs"]\n', false],
  ])('CRI disabled: %s → %s', (_n, text, disabled) => {
    expect(readContainerdConfig(node({ [F]: text })).criDisabled).toBe(disabled);
  });
});

describe('readContainerdConfig: imports, as containerd merges them', () => {
  it('a relative import is relative to the importing file; a later file replaces a plugin section whole', () => {
    const c = readContainerdConfig(
      node({
        [F]: `version = 2\nimports = ["conf.d/10-pause.toml"]\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "${PAUSE}"\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/etc/containerd/certs.d"\n`,
        '/etc/containerd/conf.d/10-pause.toml': `[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "registry.k8s.io/pause:3.10"\n`,
      }),
    );
    expect(c.files).toEqual([F, '/etc/containerd/conf.d/10-pause.toml']);
    expect(c.sandboxImage).toEqual({
      value: 'registry.k8s.io/pause:3.10',
      where:
        'sandbox_image under [plugins."io.containerd.grpc.v1.cri"] in /etc/containerd/conf.d/10-pause.toml',
    });
    // The import's CRI section has no registry table: the whole section was replaced.
    expect(c.configPath).toBeUndefined();
  });

  it('globs match in name order; scalars: a non-empty later value wins; a cycle loads each file once', () => {
    const c = readContainerdConfig(
      node({
        [F]: 'version = 2\nroot = "/data/containerd"\nimports = ["/etc/containerd/conf.d/*.toml"]\n',
        '/etc/containerd/conf.d/20-b.toml': 'state = "/run/b"\nimports = ["/etc/containerd/config.toml"]\n',
        '/etc/containerd/conf.d/10-a.toml': 'state = "/run/a"\nroot = ""\n[grpc]\naddress = "/run/a.sock"\n',
        '/etc/containerd/conf.d/notes.txt': 'not toml [',
      }),
    );
    expect(c.files).toEqual([F, '/etc/containerd/conf.d/10-a.toml', '/etc/containerd/conf.d/20-b.toml']);
    expect(c.root.value).toBe('/data/containerd');
    expect(c.state).toEqual({ value: '/run/b', where: 'state in /etc/containerd/conf.d/20-b.toml' });
    expect(c.address.value).toBe('/run/a.sock');
    expect(c.version).toBe(2);
  });

  it('a glob that matches nothing is no error', () => {
    const c = readContainerdConfig(
      node({ [F]: 'version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n' }),
    );
    expect(c.files).toEqual([F]);
  });

  it('globFiles matches ? and [...] per segment, sorted', () => {
    const r = node({ '/a/x1/c.toml': '', '/a/x2/c.toml': '', '/a/y1/c.toml': '', '/a/x3/d.toml': '' });
    expect(globFiles(r, '/a/x[12]/*.toml')).toEqual(['/a/x1/c.toml', '/a/x2/c.toml']);
    expect(globFiles(r, '/a/?1/c.toml')).toEqual(['/a/x1/c.toml', '/a/y1/c.toml']);
  });
});

describe('readContainerdConfig: files containerd would refuse', () => {
  it.each([
    [
      'a TOML syntax error: file, line and column',
      { [F]: 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "x\n' },
      new RegExp(`^${F}: TOML syntax error at line 3, column \\d+: .*containerd will not start with it$`),
    ],
    [
      'a missing import: which file names it',
      { [F]: 'version = 2\nimports = ["/etc/containerd/extra.toml"]\n' },
      new RegExp(`^/etc/containerd/extra.toml \\(imported by ${F}\\) does not exist`),
    ],
    ['a directory', { [`${F}/x`]: '' }, new RegExp(`^${F} is a directory, not a file`)],
  ])('%s: CONTAINERD_CONFIG_INVALID', (_n, tree, message) => {
    let err: unknown;
    try {
      readContainerdConfig(node(tree));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BootError);
    expect((err as BootError).code).toBe('CONTAINERD_CONFIG_INVALID');
    expect((err as BootError).exitCode).toBe(78);
    expect((err as BootError).message).toMatch(message);
  });
});
