/**
 * One http(s) agent for node-bootstrap's AWS calls that honours the node's proxy settings per
 * connection: `proxyFor` (core/proxy.ts, NO_PROXY included) picks a CONNECT tunnel through the proxy
 * (https-proxy-agent) or a direct socket. Node's own http/https ignore HTTPS_PROXY, and the AWS SDK
 * uses whatever agent it is given, so this is the one place proxies are applied. IMDS never uses it.
 */
import type { ClientRequest } from 'node:http';
import { isIP, connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Agent, type AgentConnectOpts } from 'agent-base';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { type ProxySettings, proxyFor, proxyUrl, redactProxy } from '../core/proxy.js';

export class ProxyRoutingAgent extends Agent {
  private readonly tunnels = new Map<string, HttpsProxyAgent<string>>();
  /** The last connection's route: its target and the proxy it went through (redacted), if any. */
  lastRoute?: { target: string; proxy?: string };

  constructor(private readonly settings: ProxySettings) {
    super({ keepAlive: true });
  }

  connect(_req: ClientRequest, opts: AgentConnectOpts) {
    const secure = opts.secureEndpoint;
    const host = opts.host ?? 'localhost';
    const target = new URL(`${secure ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}`);
    if (opts.port) target.port = String(opts.port);
    const via = proxyFor(target, this.settings);
    const proxy = via && proxyUrl(via.value);
    this.lastRoute = {
      target: `${host.includes(':') ? `[${host}]` : host}:${opts.port ?? (secure ? 443 : 80)}`,
      ...(via ? { proxy: redactProxy(via.value) } : {}),
    };
    if (!proxy)
      return secure
        ? tlsConnect({ ...opts, ...(isIP(host) ? {} : { servername: opts.servername ?? host }) })
        : netConnect(opts);
    let tunnel = this.tunnels.get(proxy.href);
    if (!tunnel) {
      tunnel = new HttpsProxyAgent(proxy.href, { keepAlive: true });
      this.tunnels.set(proxy.href, tunnel);
    }
    return tunnel;
  }

  override destroy(): void {
    for (const t of this.tunnels.values()) t.destroy();
    super.destroy();
  }
}
