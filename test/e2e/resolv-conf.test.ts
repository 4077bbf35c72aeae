/**
 * resolvConfPolicy: repair in a real systemd (nspawn): node-bootstrap (the bundle, as a transient
 * unit) finds kubelet's empty --resolv-conf in its unit's Environment=, writes a corrected copy and
 * points kubelet at it; kubelet (a stand-in that records its arguments) is started by the kubelet
 * phase and receives the flag. Through the shipped gate drop-in's EnvironmentFile= (no reload), and
 * through node-bootstrap's own drop-in plus a D-Bus daemon-reload when the gate does not name it.
 * A later run with a usable file takes the repair back out.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLoopback, parseResolvConf } from '../../src/core/resolv-conf.js';
import { bootSystemd, findLeftovers, type SystemdContainer } from './harness.js';

const REPO = join(import.meta.dirname, '..', '..');
const BUNDLE = '/srv/node-bootstrap/dist/node-bootstrap.mjs';
const GATE = readFileSync(join(REPO, 'systemd/kubelet.service.d/10-node-bootstrap.conf'), 'utf8');
/** The gate without the EnvironmentFile= line: repair must add its own drop-in and reload. */
const GATE_ONLY = '[Unit]\nAssertPathExists=/run/node-bootstrap/gates-passed\n';
const KUBELET = `[Unit]
Description=kubelet stand-in: records the arguments systemd gives it
[Service]
Environment="KUBELET_EXTRA_ARGS=--node-labels=team=a --resolv-conf=/etc/kubelet-resolv.conf"
ExecStart=/bin/sh -c 'printf "%%s\\n" "$@" > /run/kubelet-args; exec sleep infinity' kubelet $KUBELET_EXTRA_ARGS
`;
const RUN = ['/usr/bin/node', BUNDLE, 'run', '--skip', 'containerd-unit,containerd-socket,cri,sandbox-image'];

function boot(name: string, gate: string) {
  return bootSystemd({
    name,
    units: { 'kubelet.service': KUBELET },
    files: {
      '/etc/systemd/system/kubelet.service.d/10-node-bootstrap.conf': gate,
      '/etc/node-bootstrap/config.yaml': 'kubelet:\n  resolvConfPolicy: repair\n',
      '/etc/kubelet-resolv.conf': '',
    },
    binds: [{ host: REPO, inside: '/srv/node-bootstrap', readOnly: true }],
  });
}

/** kubelet's arguments after argv[0], as the stand-in's "$@" recorded them. */
const kubeletArgs = (c: SystemdContainer) =>
  readFileSync(c.path('/run/kubelet-args'), 'utf8').trim().split('\n');

describe.each([
  ['the shipped gate names the env file: no drop-in, no reload', 'gate', GATE, false],
  ['a gate without it: node-bootstrap’s drop-in and a D-Bus daemon-reload', 'gate-only', GATE_ONLY, true],
])('repair, %s', (_name, label, gate, dropIn) => {
  let c: SystemdContainer;
  beforeAll(async () => {
    c = await boot(`resolv-${label}`, gate);
  });
  afterAll(async () => {
    if (!c) return;
    await c.stop();
    expect(findLeftovers(c)).toEqual([]);
  });

  it('kubelet starts with --resolv-conf pointing at the corrected copy; the original is untouched', async () => {
    const r = await c.runUnit(RUN, { timeoutMs: 60_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^node-bootstrap: OK \d\/6 phases in \d+\.\d\ds warnings=1\b/m);
    expect(kubeletArgs(c)).toEqual([
      '--node-labels=team=a',
      '--resolv-conf=/etc/kubelet-resolv.conf',
      '--resolv-conf=/run/node-bootstrap/resolv.conf',
    ]);
    const fixed = parseResolvConf(readFileSync(c.path('/run/node-bootstrap/resolv.conf'), 'utf8'));
    const host = parseResolvConf(readFileSync(c.path('/etc/resolv.conf'), 'utf8'));
    expect(fixed.nameservers.map((n) => n.address)).toEqual(
      host.nameservers
        .map((n) => n.address)
        .filter((a) => !isLoopback(a))
        .slice(0, 3),
    );
    expect(readFileSync(c.path('/etc/kubelet-resolv.conf'), 'utf8')).toBe('');
    const status = JSON.parse(readFileSync(c.path('/run/node-bootstrap/status.json'), 'utf8'));
    const phase = status.phases.find((p: { name: string }) => p.name === 'resolv-conf');
    expect(phase.facts).toMatchObject({
      resolvConfPolicy: 'repair',
      resolvConfRepaired: '/run/node-bootstrap/resolv.conf',
    });
    expect(phase.warnings[0]).toMatch(
      dropIn
        ? /through \$KUBELET_EXTRA_ARGS in the drop-in \/run\/systemd\/system\/kubelet\.service\.d\/20-node-bootstrap-resolv\.conf \(systemd reloaded\)/
        : /through \$KUBELET_EXTRA_ARGS in \/run\/node-bootstrap\/kubelet-resolv\.env, which kubelet's unit already reads/,
    );
    const paths = (await c.systemctl('show', '-p', 'DropInPaths', 'kubelet.service')).stdout;
    expect(paths.includes('20-node-bootstrap-resolv.conf')).toBe(dropIn);
  });

  it('a later run with a usable file removes the repair (and reloads when it had a drop-in)', async () => {
    writeFileSync(c.path('/etc/kubelet-resolv.conf'), 'nameserver 10.0.0.2\n');
    await c.systemctl('stop', 'kubelet.service');
    const r = await c.runUnit(RUN, { timeoutMs: 60_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^node-bootstrap: OK \d\/6 phases in \d+\.\d\ds(?! warnings)/m);
    expect(kubeletArgs(c)).toEqual(['--node-labels=team=a', '--resolv-conf=/etc/kubelet-resolv.conf']);
    const gone = await c.exec(['ls', '/run/node-bootstrap', '/run/systemd/system/kubelet.service.d']);
    expect(gone.stdout).not.toMatch(/kubelet-resolv\.env|resolv\.conf\b|20-node-bootstrap-resolv\.conf/);
    expect((await c.systemctl('show', '-p', 'DropInPaths', 'kubelet.service')).stdout).not.toContain(
      '20-node-bootstrap-resolv.conf',
    );
  });
});
