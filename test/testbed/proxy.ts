/**
 * A forward proxy for the testbed: HTTP CONNECT tunnels (what clients use for https:// through
 * HTTPS_PROXY), with a log line per tunnel so that tests see exactly what went through it and what
 * did not. `routes` map a CONNECT target (host:port) to a local address, the way a corporate proxy
 * resolves public names: with it a client can ask for the real ECR API host and reach the emulator.
 * Plain-HTTP forward requests (absolute URIs) are logged and refused (405): only tunnels are used.
 *
 * Also: a TLS front (a TLS terminator before a plain-HTTP emulator), so that the ECR API emulator can
 * be reached as https://api.ecr.<region>.amazonaws.com with a certificate the client trusts.
 */
import { createServer, type IncomingMessage } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

export interface ProxyLogEntry {
  method: 'CONNECT' | string;
  /** host:port as the client asked for it. */
  target: string;
  /** Where the tunnel really went (a route), or the target itself. */
  upstream: string;
  /** 200 tunnel up; 502 upstream unreachable; 403 denied; 405 not a CONNECT. */
  status: number;
  time: number;
}

export interface TestProxy {
  url: string;
  port: number;
  log: ProxyLogEntry[];
  /** One line per entry, e.g. "CONNECT api.ecr.us-west-2.amazonaws.com:443 → 127.0.0.1:41234 200". */
  lines(): string[];
  close(): Promise<void>;
}

export interface ProxyOptions {
  /** CONNECT target host:port → local host:port. Targets without a route are dialled as asked. */
  routes?: Record<string, string>;
  /** Targets (host:port) refused with 403, like a proxy allowlist that lacks them. */
  deny?: string[];
}

const splitHostPort = (hp: string): [string, number] => {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(hp);
  return m ? [m[1]!, Number(m[2])] : [hp, 443];
};

export async function startProxy(opts: ProxyOptions = {}): Promise<TestProxy> {
  const log: ProxyLogEntry[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    log.push({
      method: req.method ?? '',
      target: req.url ?? '',
      upstream: '-',
      status: 405,
      time: Date.now(),
    });
    res.writeHead(405, { 'content-type': 'text/plain' }).end('testbed proxy: CONNECT only\n');
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const target = req.url ?? '';
    const upstream = opts.routes?.[target] ?? target;
    const entry: ProxyLogEntry = { method: 'CONNECT', target, upstream, status: 0, time: Date.now() };
    log.push(entry);
    client.on('error', () => {});
    if (opts.deny?.includes(target)) {
      entry.status = 403;
      client.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const [host, port] = splitHostPort(upstream);
    const up = connect({ host, port });
    sockets.add(up);
    up.on('close', () => sockets.delete(up));
    up.once('connect', () => {
      entry.status = 200;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    up.on('error', () => {
      if (entry.status === 0) {
        entry.status = 502;
        client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
      } else client.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    lines: () =>
      log.map(
        (e) => `${e.method} ${e.target}${e.upstream !== e.target ? ` → ${e.upstream}` : ''} ${e.status}`,
      ),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface TlsFront {
  /** host:port of the TLS listener (127.0.0.1). */
  address: string;
  port: number;
  close(): Promise<void>;
}

/** TLS on the outside (cert/key as PEM), plain TCP to `to` (host:port) inside. */
export async function startTlsFront(o: { cert: string; key: string; to: string }): Promise<TlsFront> {
  const [host, port] = splitHostPort(o.to);
  const sockets = new Set<Socket>();
  const server = createTlsServer({ cert: o.cert, key: o.key }, (tls) => {
    const up = connect({ host, port });
    for (const s of [tls, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        tls.destroy();
        up.destroy();
      });
    }
    tls.pipe(up);
    up.pipe(tls);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const p = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${p}`,
    port: p,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
