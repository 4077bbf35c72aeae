/**
 * A real OCI registry (docker-registry 2.8) on 127.0.0.1:<free port>: TLS with the testbed CA,
 * htpasswd (bcrypt) user `AWS` with an ECR-style password, filesystem storage in the testbed dir.
 * stop()/start() keep the port and the storage, so "registry down" and recovery can be tested.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import type { Pki } from './pki.js';
import { freePort, run, spawnDaemon, stopProcess, waitUntil } from './proc.js';

export interface Registry {
  /** `127.0.0.1:<port>` */
  host: string;
  port: number;
  username: string;
  password: string;
  caFile: string;
  /** Folder with only the CA: skopeo's --dest-cert-dir. */
  caDir: string;
  /** containers-auth.json with the credentials: skopeo's --dest-authfile. */
  authFile: string;
  pid(): number | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Real ECR passwords are long base64 JSON (`eyJwYXlsb2FkIjoi…`), but bcrypt checks only the first
 * 72 bytes: keep it at exactly 72 so any change to it is a wrong password.
 */
export const ecrStylePassword = (): string =>
  ('eyJwYXlsb2FkIjoi' + randomBytes(54).toString('base64url')).slice(0, 72);

/** GET /v2/ answers 401 (or 200) once the registry serves TLS. */
function probe(host: string, ca: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port: host.split(':')[1], path: '/v2/', ca, timeout: 1000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 401 || res.statusCode === 200);
      },
    );
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

export async function startRegistry(dir: string, pki: Pki, opts: { port?: number } = {}): Promise<Registry> {
  await mkdir(join(dir, 'storage'), { recursive: true });
  const port = opts.port ?? (await freePort());
  const host = `127.0.0.1:${port}`;
  const username = 'AWS';
  const password = ecrStylePassword();
  const htpasswd = await run('htpasswd', ['-niB', username], { input: password });
  await writeFile(join(dir, 'htpasswd'), htpasswd, { mode: 0o600 });
  const authFile = join(dir, 'auth.json');
  const auth = Buffer.from(`${username}:${password}`).toString('base64');
  await writeFile(authFile, JSON.stringify({ auths: { [host]: { auth } } }), { mode: 0o600 });
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    `version: 0.1
log: { level: warn, accesslog: { disabled: true } }
storage:
  filesystem: { rootdirectory: ${join(dir, 'storage')} }
  delete: { enabled: true }
  maintenance: { uploadpurging: { enabled: false } }
http:
  addr: ${host}
  secret: ${randomBytes(16).toString('hex')}
  tls: { certificate: ${pki.certFile}, key: ${pki.keyFile} }
auth:
  htpasswd: { realm: testbed, path: ${join(dir, 'htpasswd')} }
`,
  );
  const ca = readFileSync(pki.caFile);
  const logFile = join(dir, 'registry.log');
  let child: ChildProcess | undefined;

  const registry: Registry = {
    host,
    port,
    username,
    password,
    caFile: pki.caFile,
    caDir: pki.caDir,
    authFile,
    pid: () => child?.pid,
    async start() {
      if (child && child.exitCode === null) return;
      child = spawnDaemon('/usr/bin/docker-registry', ['serve', config], logFile);
      const proc = child;
      await waitUntil(`registry on ${host}`, () => probe(host, ca), {
        failIf: () =>
          proc.exitCode === null ? undefined : `exited: ${readFileSync(logFile, 'utf8').slice(-500)}`,
      });
    },
    async stop() {
      await stopProcess(child?.pid);
      child = undefined;
    },
  };
  await registry.start();
  return registry;
}
