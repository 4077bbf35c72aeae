/** Image references: pure parsing, enough to compare references and find their registry host. */

export interface ImageRef {
  /** Registry host (with port), `docker.io` when the reference names none. */
  host: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export function parseImageRef(ref: string): ImageRef | undefined {
  const m =
    /^(?:([^/]+)\/)?([a-z0-9]+(?:[._/-][a-z0-9]+)*?)(?::([\w][\w.-]{0,127}))?(?:@(sha256:[a-f0-9]{64}))?$/.exec(
      ref,
    );
  if (!m) return undefined;
  const [, first, rest, tag, digest] = m;
  // The first component is a host only when it looks like one (a dot, a port, or localhost).
  if (first && (/[.:]/.test(first) || first === 'localhost'))
    return { host: first, repository: rest!, tag, digest };
  if (first && !/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(first)) return undefined;
  const repository = first ? `${first}/${rest}` : `library/${rest}`;
  return { host: 'docker.io', repository, tag, digest };
}

/** A reference as containerd names it: a tag is always present (`:latest` when none is given). */
export function normalizeRef(ref: string): string {
  const r = parseImageRef(ref);
  if (!r) return ref;
  const name = `${r.host}/${r.repository}`;
  if (r.digest) return r.tag ? `${name}:${r.tag}@${r.digest}` : `${name}@${r.digest}`;
  return `${name}:${r.tag ?? 'latest'}`;
}
