/**
 * Finding kubelet's resolv.conf and image GC thresholds the way kubelet does, over real node layouts
 * written to disk (AL2023/nodeadm, AL2/bootstrap.sh, the seed incident), read through node-files.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createNodeFiles } from '../../src/adapters/node-files.js';
import { discoverKubelet, lastFlag } from '../../src/core/kubelet-settings.js';
import {
  execStart,
  listSetting,
  loadUnit,
  parseEnvironmentFile,
  parseUnitFile,
  splitWords,
  unitEnvironment,
} from '../../src/core/unit-files.js';
import { isBootError } from '../../src/errors.js';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/** A node root with these files (a value starting with "->" is a symlink). */
function node(tree: Record<string, string>) {
  const root = mkdtempSync(join(tmpdir(), 'nb-kubelet-'));
  roots.push(root);
  for (const [path, content] of Object.entries(tree)) {
    mkdirSync(join(root, dirname(path)), { recursive: true });
    if (content.startsWith('->')) symlinkSync(content.slice(2).trim(), join(root, path));
    else writeFileSync(join(root, path), content);
  }
  return createNodeFiles(root);
}

const AL2023_UNIT = `[Unit]
Description=Kubernetes Kubelet
After=containerd.service
[Service]
EnvironmentFile=/etc/eks/kubelet/environment
ExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5
ExecStart=/usr/bin/kubelet $NODEADM_KUBELET_ARGS
Restart=on-failure
[Install]
WantedBy=multi-user.target
`;
const AL2023_ENV = `NODEADM_KUBELET_ARGS="--node-ip=10.0.1.2 --hostname-override=ip-10-0-1-2 --config=/etc/kubernetes/kubelet/config.json --config-dir=/etc/kubernetes/kubelet/config.json.d --kubeconfig=/var/lib/kubelet/kubeconfig"\n`;
const AL2_UNIT = `[Unit]
Description=Kubernetes Kubelet
[Service]
ExecStart=/usr/bin/kubelet --cloud-provider external \\
    --config /etc/kubernetes/kubelet/kubelet-config.json \\
    --kubeconfig /var/lib/kubelet/kubeconfig \\
    $KUBELET_ARGS $KUBELET_EXTRA_ARGS
`;

describe('discoverKubelet: which resolv.conf kubelet uses', () => {
  it.each<[string, Record<string, string>, Parameters<typeof discoverKubelet>[1], string, RegExp]>([
    ['nothing installed: kubelet’s default', {}, {}, '/etc/resolv.conf', /kubelet's default/],
    [
      'AL2023: the config file',
      {
        '/usr/lib/systemd/system/kubelet.service': AL2023_UNIT,
        '/etc/eks/kubelet/environment': AL2023_ENV,
        '/etc/kubernetes/kubelet/config.json':
          '{"kind":"KubeletConfiguration","resolvConf":"/run/systemd/resolve/resolv.conf"}',
      },
      {},
      '/run/systemd/resolve/resolv.conf',
      /^resolvConf in \/etc\/kubernetes\/kubelet\/config\.json$/,
    ],
    [
      'AL2023: a config.json.d drop-in beats the config file',
      {
        '/usr/lib/systemd/system/kubelet.service': AL2023_UNIT,
        '/etc/eks/kubelet/environment': AL2023_ENV,
        '/etc/kubernetes/kubelet/config.json': '{"resolvConf":"/etc/resolv.conf"}',
        '/etc/kubernetes/kubelet/config.json.d/00-nodeadm.conf': '{"clusterDomain":"cluster.local"}',
        '/etc/kubernetes/kubelet/config.json.d/40-custom.conf': 'resolvConf: /etc/custom-resolv.conf\n',
        '/etc/kubernetes/kubelet/config.json.d/README': 'resolvConf: /not/a/drop-in\n',
      },
      {},
      '/etc/custom-resolv.conf',
      /40-custom\.conf$/,
    ],
    [
      'AL2: the seed incident, --resolv-conf in KUBELET_EXTRA_ARGS beats the config file',
      {
        '/etc/systemd/system/kubelet.service': AL2_UNIT,
        '/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf':
          "[Service]\nEnvironment='KUBELET_ARGS=--node-ip=10.0.1.2 --pod-infra-container-image=602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.5'\n",
        '/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf':
          "[Service]\nEnvironment='KUBELET_EXTRA_ARGS=--node-labels=a=b --resolv-conf=/etc/kubelet-resolv.conf'\n",
        '/etc/kubernetes/kubelet/kubelet-config.json':
          '{"resolvConf":"/etc/resolv.conf","clusterDomain":"cluster.local"}',
      },
      {},
      '/etc/kubelet-resolv.conf',
      /^--resolv-conf in \$KUBELET_EXTRA_ARGS \(\/etc\/systemd\/system\/kubelet\.service\.d\/30-kubelet-extra-args\.conf\)$/,
    ],
    [
      'no unit, the EKS environment file only',
      {
        '/etc/eks/kubelet/environment': 'KUBELET_EXTRA_ARGS="--resolv-conf /etc/empty-resolv.conf"\n',
      },
      {},
      '/etc/empty-resolv.conf',
      /\$KUBELET_EXTRA_ARGS \(\/etc\/eks\/kubelet\/environment\)/,
    ],
    [
      'no unit: the EKS config file found by its default path',
      { '/etc/kubernetes/kubelet/config.json': '{"resolvConf":"/etc/from-default-config.conf"}' },
      {},
      '/etc/from-default-config.conf',
      /config\.json$/,
    ],
    [
      'a unit whose variable is not written yet (an AMI before nodeadm ran): the EKS config file',
      {
        '/usr/lib/systemd/system/kubelet.service': AL2023_UNIT,
        '/etc/kubernetes/kubelet/config.json': '{"resolvConf":"/etc/baked.conf"}',
      },
      {},
      '/etc/baked.conf',
      /config\.json$/,
    ],
    [
      'a drop-in resets ExecStart and sets the flag with a space',
      {
        '/usr/lib/systemd/system/kubelet.service': AL2023_UNIT,
        '/etc/systemd/system/kubelet.service.d/50-mine.conf':
          '[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --resolv-conf /etc/mine.conf --v=2\n',
      },
      {},
      '/etc/mine.conf',
      /ExecStart \(\/etc\/systemd\/system\/kubelet\.service\.d\/50-mine\.conf\)/,
    ],
    [
      'the last --resolv-conf wins',
      {
        '/etc/systemd/system/kubelet.service':
          '[Service]\nEnvironment=A=--resolv-conf=/etc/first.conf\nExecStart=/usr/bin/kubelet $A --resolv-conf=/etc/second.conf\n',
      },
      {},
      '/etc/second.conf',
      /ExecStart/,
    ],
    [
      'EnvironmentFile= overrides Environment=',
      {
        '/etc/systemd/system/kubelet.service':
          '[Service]\nEnvironmentFile=-/etc/default/kubelet\nEnvironment="EXTRA=--resolv-conf=/etc/from-environment.conf"\nExecStart=/usr/bin/kubelet $EXTRA\n',
        '/etc/default/kubelet': 'EXTRA=--resolv-conf=/etc/from-file.conf\n',
      },
      {},
      '/etc/from-file.conf',
      /\$EXTRA \(\/etc\/default\/kubelet\)/,
    ],
    [
      'an /etc unit overrides the /usr/lib one',
      {
        '/usr/lib/systemd/system/kubelet.service':
          '[Service]\nExecStart=/usr/bin/kubelet --resolv-conf=/etc/vendor.conf\n',
        '/etc/systemd/system/kubelet.service':
          '[Service]\nExecStart=/usr/bin/kubelet --resolv-conf=/etc/admin.conf\n',
      },
      {},
      '/etc/admin.conf',
      /\/etc\/systemd\/system\/kubelet\.service/,
    ],
    [
      'node-bootstrap’s own repair drop-in is not what the operator configured',
      {
        '/etc/systemd/system/kubelet.service': '[Service]\nExecStart=/usr/bin/kubelet $KUBELET_EXTRA_ARGS\n',
        '/run/systemd/system/kubelet.service.d/20-node-bootstrap-resolv.conf':
          '[Service]\nEnvironment=KUBELET_EXTRA_ARGS=--resolv-conf=/run/node-bootstrap/resolv.conf\n',
      },
      {},
      '/etc/resolv.conf',
      /default/,
    ],
    [
      'kubelet.resolvConf (node-bootstrap config) overrides everything',
      { '/etc/eks/kubelet/environment': 'KUBELET_EXTRA_ARGS=--resolv-conf=/etc/x.conf\n' },
      { resolvConf: '/etc/override.conf' },
      '/etc/override.conf',
      /node-bootstrap config/,
    ],
    [
      'kubelet.config (node-bootstrap config) names kubelet’s config file',
      {
        '/opt/kubelet.yaml':
          'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nresolvConf: /etc/yaml.conf\n',
      },
      { kubeletConfig: '/opt/kubelet.yaml' },
      '/etc/yaml.conf',
      /\/opt\/kubelet\.yaml$/,
    ],
    [
      '--resolv-conf="" (no file at all)',
      { '/etc/systemd/system/kubelet.service': '[Service]\nExecStart=/usr/bin/kubelet --resolv-conf=""\n' },
      {},
      '',
      /--resolv-conf/,
    ],
    [
      'a masked kubelet: the EKS environment file',
      {
        '/etc/systemd/system/kubelet.service': '->/dev/null',
        '/usr/lib/systemd/system/kubelet.service':
          '[Service]\nExecStart=/usr/bin/kubelet --resolv-conf=/etc/vendor.conf\n',
        '/etc/eks/kubelet/environment': 'KUBELET_ARGS=--resolv-conf=/etc/env.conf\n',
      },
      {},
      '/etc/env.conf',
      /environment/,
    ],
  ])('%s', (_name, tree, opts, path, where) => {
    const k = discoverKubelet(node(tree), opts);
    expect(k.resolvConf.value).toBe(path);
    expect(k.resolvConf.source.where).toMatch(where);
  });

  it('image GC thresholds and cluster domain: flags over drop-ins over the config file over defaults', () => {
    const k = discoverKubelet(
      node({
        '/usr/lib/systemd/system/kubelet.service': AL2023_UNIT,
        '/etc/eks/kubelet/environment': AL2023_ENV.replace('"\n', ' --image-gc-low-threshold=60"\n'),
        '/etc/kubernetes/kubelet/config.json':
          '{"imageGCHighThresholdPercent":90,"imageGCLowThresholdPercent":70,"clusterDomain":"cluster.local"}',
        '/etc/kubernetes/kubelet/config.json.d/10-gc.conf': '{"imageGCHighThresholdPercent":75}',
      }),
    );
    expect(k.imageGCHigh).toMatchObject({ value: 75, source: { kind: 'kubelet-config' } });
    expect(k.imageGCLow).toMatchObject({ value: 60, source: { kind: 'flag' } });
    expect(k.clusterDomain?.value).toBe('cluster.local');
    expect(k.configDropIns).toEqual(['/etc/kubernetes/kubelet/config.json.d/10-gc.conf']);
    const d = discoverKubelet(node({}));
    expect([d.imageGCHigh.value, d.imageGCLow.value, d.clusterDomain]).toEqual([85, 80, undefined]);
  });

  it.each<[string, Record<string, string>, Parameters<typeof discoverKubelet>[1], RegExp]>([
    [
      'broken JSON',
      { '/etc/kubernetes/kubelet/config.json': '{"resolvConf": ' },
      {},
      /config\.json: not valid JSON or YAML/,
    ],
    [
      'a list, not an object',
      { '/etc/kubernetes/kubelet/config.json': '[1,2]' },
      {},
      /expected a KubeletConfiguration object/,
    ],
    [
      'resolvConf not a string',
      { '/etc/kubernetes/kubelet/config.json': '{"resolvConf":5}' },
      {},
      /resolvConf: expected a string/,
    ],
    [
      'threshold out of range',
      { '/etc/kubernetes/kubelet/config.json': '{"imageGCHighThresholdPercent":150}' },
      {},
      /imageGCHighThresholdPercent: expected an integer from 0 to 100/,
    ],
    [
      '--config names a missing file',
      {
        '/etc/systemd/system/kubelet.service':
          '[Service]\nExecStart=/usr/bin/kubelet --config=/etc/nope.json\n',
      },
      {},
      /kubelet's config file \/etc\/nope\.json does not exist/,
    ],
    [
      'kubelet.config names a missing file',
      {},
      { kubeletConfig: '/etc/nope.yaml' },
      /\/etc\/nope\.yaml does not exist/,
    ],
  ])('KUBELET_CONFIG_INVALID: %s', (_name, tree, opts, re) => {
    let err: unknown;
    try {
      discoverKubelet(node(tree), opts);
    } catch (e) {
      err = e;
    }
    expect(isBootError(err, 'KUBELET_CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(re);
  });
});

describe('unit files as systemd reads them', () => {
  it('parses sections, comments and continuations', () => {
    const d = parseUnitFile(
      '# c\n[Unit]\n; c\nAfter=a.service \\\n  b.service\n[Service]\nType = oneshot\n',
      '/u',
    );
    expect(d.map((x) => [x.section, x.key, x.value])).toEqual([
      ['Unit', 'After', 'a.service    b.service'],
      ['Service', 'Type', 'oneshot'],
    ]);
  });

  it.each<[string, string[]]>([
    [
      '/usr/bin/kubelet --a=1  --b "two words" \'three\'',
      ['/usr/bin/kubelet', '--a=1', '--b', 'two words', 'three'],
    ],
    ['"A=x y" B=z', ['A=x y', 'B=z']],
    ['a\\ b "c\\"d" \'e\\tf\'', ['a b', 'c"d', 'e\tf']],
    ['', []],
  ])('splitWords(%j)', (text, words) => expect(splitWords(text)).toEqual(words));

  it('environment files: quotes, comments, continuations, junk lines', () => {
    const env = parseEnvironmentFile(
      '# c\nA=1\nB="two words"\nC=\'x\'\n; c\nD=a \\\nb\nexport E=1\nnot an assignment\nF="q\\"uote"\n',
    );
    expect(Object.fromEntries(env)).toEqual({ A: '1', B: 'two words', C: 'x', D: 'a b', F: 'q"uote' });
  });

  it('ExecStart: $VAR splits into words, {braced} $VAR stays one, unset vars vanish, prefixes dropped', () => {
    const files = node({
      '/etc/systemd/system/k.service':
        // biome-ignore lint/suspicious/noTemplateCurlyInString: systemd's ${VAR}, not a JS template
        '[Service]\nEnvironment="V=--a=1 --b=2" "W=x y"\nExecStart=-/usr/bin/k $V ${W} --c=${W} $UNSET\n',
    });
    const u = loadUnit(files, 'k.service');
    const e = execStart(u, unitEnvironment(files, u).vars)!;
    expect(e.argv.map((a) => a.value)).toEqual(['/usr/bin/k', '--a=1', '--b=2', 'x y', '--c=x y']);
    expect(e.vars).toEqual(['V', 'W', 'W', 'UNSET']);
    expect(lastFlag(e.argv, 'c')).toEqual({ value: 'x y', origin: '$W (/etc/systemd/system/k.service)' });
  });

  it('drop-ins: by file name across directories, a higher directory masks the same name', () => {
    const files = node({
      '/usr/lib/systemd/system/k.service': '[Unit]\nAfter=a.service\n',
      '/usr/lib/systemd/system/k.service.d/10-x.conf': '[Unit]\nAfter=vendor.service\n',
      '/etc/systemd/system/k.service.d/10-x.conf': '[Unit]\nAfter=admin.service\n',
      '/run/systemd/system/k.service.d/05-y.conf': '[Unit]\nAfter=\nAfter=run.service\n',
      '/etc/systemd/system/k.service.d/ignored.txt': '[Unit]\nAfter=no.service\n',
    });
    const u = loadUnit(files, 'k.service');
    expect(u.file).toBe('/usr/lib/systemd/system/k.service');
    expect(u.dropIns).toEqual([
      '/run/systemd/system/k.service.d/05-y.conf',
      '/etc/systemd/system/k.service.d/10-x.conf',
    ]);
    expect(listSetting(u, 'Unit', 'After').map((d) => d.value)).toEqual(['run.service', 'admin.service']);
  });

  it('a unit missing under a linked directory (/lib → usr/lib) is missing, not a dangling link', () => {
    const files = node({ '/usr/lib/systemd/system/other.service': '[Service]\n', '/lib': '->usr/lib' });
    expect(files.read('/lib/systemd/system/k.service')).toEqual({ ok: false, code: 'ENOENT' });
    expect(files.read('/lib/systemd/system/other.service')).toMatchObject({
      ok: true,
      resolved: '/usr/lib/systemd/system/other.service',
    });
    expect(loadUnit(files, 'k.service').file).toBeUndefined();
  });

  it.each([
    ['a link to /dev/null', '->/dev/null'],
    ['an empty file', ''],
  ])('masked: %s', (_name, content) => {
    const u = loadUnit(node({ '/etc/systemd/system/k.service': content }), 'k.service');
    expect(u).toMatchObject({ file: '/etc/systemd/system/k.service', masked: true });
  });
});
