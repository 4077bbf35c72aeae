/**
 * NodeConfig (`node.eks.aws/v1alpha1`, kind NodeConfig) as EC2 user data carries it: a MIME multipart
 * document (Karpenter, managed node groups, eksctl, Terraform) whose `application/node.eks.aws` parts
 * hold YAML or JSON, or the YAML document alone. Only what node-bootstrap needs and the rendered files
 * lack is extracted: the cluster endpoint (NO_PROXY must cover it) and `spec.instance.environment`
 * (the proxy variables). nodeadm owns the rest, and its merge rules are not repeated here beyond
 * "later documents win, maps merge". Pure: bytes in, facts or errors that name the part and the key.
 */
import { gunzipSync } from 'node:zlib';
import { parseAllDocuments } from 'yaml';

export const NODECONFIG_API_VERSION = 'node.eks.aws/v1alpha1';
export const NODECONFIG_MEDIA_TYPE = 'application/node.eks.aws';

export interface NodeConfigFacts {
  /** spec.cluster.apiServerEndpoint, as written (a URL). */
  apiServerEndpoint?: string;
  /** spec.cluster.cidr: the cluster's service CIDR. */
  serviceCidr?: string;
  /**
   * spec.instance.environment: `default` (every service on the instance) or a systemd service name
   * (without `.service`) → variables.
   */
  environment: Record<string, Record<string, string>>;
  /** Where each NodeConfig document came from, e.g. "application/node.eks.aws part 1". */
  documents: string[];
}

export interface UserDataResult {
  /** Undefined when the user data holds no NodeConfig (a shell script, cloud-config, empty). */
  nodeConfig?: NodeConfigFacts;
  /** Problems that name the part and the key; the documents without problems still count. */
  errors: string[];
  /** What the user data is, for messages: "MIME multipart, 2 parts", "YAML", "shell script", "empty". */
  kind: string;
}

type Doc = { where: string; value: unknown };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Looks like a MIME message: header lines up to a blank line, one of them MIME-Version or Content-Type. */
function isMime(text: string): boolean {
  const head = text.slice(0, 4096).split(/\r?\n\r?\n/, 1)[0] ?? '';
  return /^(mime-version|content-type)\s*:/im.test(head) && /^[\w-]+\s*:/.test(head.trimStart());
}

function yamlDocs(text: string, where: string, errors: string[]): Doc[] {
  const out: Doc[] = [];
  parseAllDocuments(text, { uniqueKeys: true }).forEach((d, i, all) => {
    const at = all.length > 1 ? `${where}, document ${i + 1}` : where;
    if (d.errors.length > 0) {
      const e = d.errors[0]!;
      const pos = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
      errors.push(`${at}: YAML syntax error${pos}: ${e.message.split('\n')[0]}`);
      return;
    }
    const value = d.toJS() as unknown;
    if (value !== null && value !== undefined) out.push({ where: at, value });
  });
  return out;
}

/** The fields node-bootstrap reads from one NodeConfig document; errors name the key. */
function readDoc(doc: Doc, into: NodeConfigFacts, errors: string[]): void {
  const { where, value } = doc;
  if (!isObject(value)) {
    errors.push(
      `${where}: expected a NodeConfig object, found ${Array.isArray(value) ? 'a list' : typeof value}`,
    );
    return;
  }
  if (value.kind !== 'NodeConfig') return; // another kind of document: not ours to judge
  if (value.apiVersion !== NODECONFIG_API_VERSION) {
    errors.push(
      `${where}: apiVersion: expected ${NODECONFIG_API_VERSION}, found ${JSON.stringify(value.apiVersion)}`,
    );
    return;
  }
  into.documents.push(where);
  const spec = value.spec;
  if (spec === undefined || spec === null) return;
  if (!isObject(spec)) return void errors.push(`${where}: spec: expected an object`);
  const cluster = spec.cluster;
  if (cluster !== undefined && cluster !== null) {
    if (!isObject(cluster)) errors.push(`${where}: spec.cluster: expected an object`);
    else {
      const ep = cluster.apiServerEndpoint;
      if (ep !== undefined && ep !== null) {
        if (typeof ep !== 'string' || !URL.canParse(ep))
          errors.push(
            `${where}: spec.cluster.apiServerEndpoint: expected a URL such as https://ABC.gr7.us-west-2.eks.amazonaws.com, found ${JSON.stringify(ep)}`,
          );
        else into.apiServerEndpoint = ep;
      }
      if (typeof cluster.cidr === 'string' && cluster.cidr) into.serviceCidr = cluster.cidr;
    }
  }
  const instance = spec.instance;
  if (instance === undefined || instance === null) return;
  if (!isObject(instance)) return void errors.push(`${where}: spec.instance: expected an object`);
  const env = instance.environment;
  if (env === undefined || env === null) return;
  if (!isObject(env))
    return void errors.push(
      `${where}: spec.instance.environment: expected a map of service name (or "default") to variables`,
    );
  for (const [service, vars] of Object.entries(env)) {
    const key = `spec.instance.environment.${service}`;
    if (vars === null || vars === undefined) continue;
    if (!isObject(vars)) {
      errors.push(
        `${where}: ${key}: expected a map of variable name to value, e.g. HTTPS_PROXY: http://proxy:3128`,
      );
      continue;
    }
    const merged = { ...(into.environment[service] ?? {}) };
    for (const [name, v] of Object.entries(vars)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        errors.push(`${where}: ${key}.${name}: not a valid environment variable name`);
        continue;
      }
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
        errors.push(`${where}: ${key}.${name}: expected a string value`);
        continue;
      }
      merged[name] = String(v);
    }
    into.environment[service] = merged;
  }
}

const decode = (c: ArrayBuffer | Uint8Array | string): string =>
  typeof c === 'string' ? c : new TextDecoder().decode(c);

/**
 * Parses EC2 user data. `where` names the source in every message (e.g. "IMDS /latest/user-data").
 * gzip-compressed user data (cloud-init accepts it) is decompressed first.
 */
export async function parseUserData(data: Uint8Array | string, where: string): Promise<UserDataResult> {
  const errors: string[] = [];
  let bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (err) {
      return {
        errors: [`${where}: gzip data that does not decompress (${(err as Error).message})`],
        kind: 'gzip',
      };
    }
  }
  const text = bytes.toString('utf8').replace(/^\uFEFF/, '');
  if (text.trim() === '') return { errors, kind: 'empty' };

  const docs: Doc[] = [];
  let kind: string;
  if (isMime(text)) {
    let parts: { mimeType: string; content: ArrayBuffer | Uint8Array | string }[];
    try {
      // Loaded only for MIME user data: most runs (no user data, or plain YAML) never evaluate it.
      const { default: PostalMime } = await import('postal-mime');
      parts = (await PostalMime.parse(text, { attachmentEncoding: 'arraybuffer' })).attachments;
    } catch (err) {
      return {
        errors: [`${where}: MIME document that does not parse (${(err as Error).message})`],
        kind: 'MIME',
      };
    }
    kind = `MIME multipart, ${parts.length} part${parts.length === 1 ? '' : 's'}`;
    let n = 0;
    for (const p of parts) {
      if (p.mimeType.toLowerCase() !== NODECONFIG_MEDIA_TYPE) continue;
      n += 1;
      docs.push(...yamlDocs(decode(p.content), `${where}, ${NODECONFIG_MEDIA_TYPE} part ${n}`, errors));
    }
  } else if (text.startsWith('#!') || text.startsWith('#cloud-') || text.startsWith('<powershell>')) {
    kind = text.startsWith('#!') ? 'shell script' : text.split(/\s/, 1)[0]!;
  } else {
    kind = 'YAML';
    docs.push(...yamlDocs(text, where, errors));
  }

  const facts: NodeConfigFacts = { environment: {}, documents: [] };
  for (const d of docs) readDoc(d, facts, errors);
  return { ...(facts.documents.length > 0 ? { nodeConfig: facts } : {}), errors, kind };
}

/**
 * The variables NodeConfig gives a service: `default` first, then the service's own (which win),
 * as nodeadm writes them (system-wide DefaultEnvironment=, then a drop-in for the service).
 */
export function environmentFor(facts: NodeConfigFacts | undefined, service: string): Record<string, string> {
  if (!facts) return {};
  const name = service.replace(/\.service$/, '');
  return { ...(facts.environment.default ?? {}), ...(facts.environment[name] ?? {}) };
}
