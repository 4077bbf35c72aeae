/**
 * A TLS front for the testbed registry that can stall image pulls half-way: it terminates TLS with
 * the testbed's own certificate (so containerd trusts it like the registry) and forwards every
 * request to the registry, except, in `stall-blobs` mode, blob downloads: those are held open and
 * never answered. A pull then gets its manifest and hangs on the layers, like a registry that
 * slowed to a crawl mid-pull.
 */

import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, request } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Pki } from '../../testbed/pki.js';

export type ProxyMode = 'pass' | 'stall-blobs';

export interface RegistryProxy {
  /** `https://127.0.0.1:<port>`: what containerd's hosts.toml points at. */
  url: string;
  mode: ProxyMode;
  /** Requests seen, by kind (`manifests`, `blobs`, `other`). */
  seen: Record<'manifests' | 'blobs' | 'other', number>;
  /** Blob requests held open right now. */
  stalled(): number;
  /** Blob requests that were held and then closed by the client (a cancelled pull). */
  abandoned(): number;
  close(): Promise<void>;
}

export async function startRegistryProxy(registryHost: string, pki: Pki): Promise<RegistryProxy> {
  const ca = readFileSync(pki.caFile);
  const [host, port] = registryHost.split(':') as [string, string];
  const held = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  let abandoned = 0;

  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    const up = request(
      { host, port: Number(port), method: req.method, path: req.url, headers: req.headers, ca },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  const server = createServer(
    { cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) },
    (req, res) => {
      const kind = /\/blobs\//.test(req.url ?? '')
        ? 'blobs'
        : /\/manifests\//.test(req.url ?? '')
          ? 'manifests'
          : 'other';
      proxy.seen[kind]++;
      if (kind === 'blobs' && proxy.mode === 'stall-blobs') {
        held.add(res);
        res.on('close', () => {
          if (held.delete(res)) abandoned++;
        });
        return;
      }
      forward(req, res);
    },
  );
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy: RegistryProxy = {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    mode: 'pass',
    seen: { manifests: 0, blobs: 0, other: 0 },
    stalled: () => held.size,
    abandoned: () => abandoned,
    close: async () => {
      held.clear();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
