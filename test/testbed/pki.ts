/** A throwaway CA and a server certificate for 127.0.0.1/localhost, made with openssl (EC P-256: fast). */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './proc.js';

export interface Pki {
  /** Folder holding only ca.crt: what `skopeo --dest-cert-dir` wants. */
  caDir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** `dnsNames`: more names the server certificate is valid for (e.g. a real AWS endpoint a proxy routes here). */
export async function createPki(dir: string, dnsNames: string[] = []): Promise<Pki> {
  const caDir = join(dir, 'ca');
  await mkdir(caDir, { recursive: true });
  const f = (name: string) => join(dir, name);
  const caFile = join(caDir, 'ca.crt');
  // biome-ignore format: one openssl argument group per line
  await run('openssl', ['req', '-x509', ...EC, '-days', '2', '-subj', '/CN=node-bootstrap testbed CA',
    '-keyout', f('ca.key'), '-out', caFile,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', [
    'req',
    ...EC,
    '-subj',
    '/CN=localhost',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  ]);
  await writeFile(
    f('server.ext'),
    `subjectAltName=IP:127.0.0.1,DNS:localhost${dnsNames.map((n) => `,DNS:${n}`).join('')}\nbasicConstraints=CA:FALSE\n` +
      'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  // biome-ignore format: one openssl argument group per line
  await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-days', '2',
    '-CA', caFile, '-CAkey', f('ca.key'), '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-extfile', f('server.ext'), '-out', f('server.crt')]);
  return { caDir, caFile, certFile: f('server.crt'), keyFile: f('server.key') };
}
