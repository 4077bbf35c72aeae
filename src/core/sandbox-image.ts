/**
 * Region → sandbox (pause) image, and ECR registry host → region. Pure: no fs, env or network.
 * The data lives in ./regions.ts; this file only applies it.
 *
 * Invariant: the registry is always in the node's own region. A region the table does not know keeps
 * its own name and gets its partition's default account, marked `known: false` so the caller warns.
 */
import { BootError } from '../errors.js';
import { PARTITION_PREFIXES, PARTITIONS, type Partition, REGIONS } from './regions.js';

export type { Partition } from './regions.js';

export interface SandboxImageRequest {
  region: string;
  /** Default '3.10'. */
  tag?: string;
  /** Use ECR's FIPS endpoint; an error where ECR offers none. */
  fips?: boolean;
  /** Use ECR's dual-stack (IPv4 + IPv6) endpoint; an error where none is documented. */
  dualstack?: boolean;
  /** Default 'eks/pause'. */
  repository?: string;
}

export interface SandboxImage {
  /** `<registry>/<repository>:<tag>` */
  image: string;
  /** The registry host, e.g. `602401143452.dkr.ecr.eu-west-1.amazonaws.com`. */
  registry: string;
  account: string;
  region: string;
  partition: Partition;
  /** False when the region is not in the table and the partition's default account was used. */
  known: boolean;
}

export interface EcrHost {
  account: string;
  region: string;
  fips: boolean;
  dualstack: boolean;
  partition: Partition;
}

export const DEFAULT_TAG = '3.10';
export const DEFAULT_REPOSITORY = 'eks/pause';

export const KNOWN_REGIONS: readonly string[] = Object.freeze(Object.keys(REGIONS));

const FIPS_REGIONS: readonly string[] = KNOWN_REGIONS.filter((r) => REGIONS[r]?.fips === true);
const DUALSTACK_PARTITIONS = (Object.keys(PARTITIONS) as Partition[]).filter(
  (p) => PARTITIONS[p].dualstackSuffix !== undefined,
);

// us-east-1, us-gov-west-1, us-isob-east-1, eu-isoe-west-1, eusc-de-east-1
const REGION_RE = /^[a-z]{2,4}(?:-[a-z]+){1,3}-\d{1,2}$/;
// OCI distribution grammar: tag, and repository path components.
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const REPOSITORY_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
// <12-digit account>.<dkr.ecr | dkr.ecr-fips | dkr-ecr | dkr-ecr-fips>.<region>.<suffix>
const ECR_HOST_RE = /^(\d{12})\.(dkr\.ecr|dkr\.ecr-fips|dkr-ecr|dkr-ecr-fips)\.([a-z0-9-]+)\.([a-z0-9.-]+)$/;

function derivePartition(region: string): Partition {
  for (const [prefix, partition] of PARTITION_PREFIXES) if (region.startsWith(prefix)) return partition;
  return 'aws';
}

function assertRegion(region: string): void {
  if (typeof region === 'string' && REGION_RE.test(region)) return;
  const az =
    typeof region === 'string' && /\d[a-z]$/.test(region) ? ' (that looks like an availability zone)' : '';
  throw new BootError(
    'CONFIG_INVALID',
    `invalid AWS region ${JSON.stringify(region)}${az}: expected a lowercase region name such as ` +
      'us-east-1, eu-west-1, cn-north-1, us-gov-west-1, us-iso-east-1 or eusc-de-east-1',
    { hint: 'set `region` to the node\'s region (IMDS placement/region), e.g. "eu-west-1"' },
  );
}

/** The partition of a region, from its name. Throws CONFIG_INVALID for a string that is not a region name. */
export function partitionOf(region: string): Partition {
  assertRegion(region);
  return derivePartition(region);
}

/** DNS suffix of the partition's IPv4 ECR registry hosts. */
export function dnsSuffix(partition: Partition): string {
  return PARTITIONS[partition].dnsSuffix;
}

export function resolveSandboxImage(req: SandboxImageRequest): SandboxImage {
  const { region } = req;
  const partition = partitionOf(region);
  const tag = req.tag ?? DEFAULT_TAG;
  const repository = req.repository ?? DEFAULT_REPOSITORY;
  if (!TAG_RE.test(tag))
    throw new BootError(
      'CONFIG_INVALID',
      `invalid sandbox image tag ${JSON.stringify(tag)}: expected 1-128 characters of [A-Za-z0-9_.-], ` +
        'not starting with "." or "-"',
      { hint: `fix sandboxImage.tag (default ${DEFAULT_TAG})` },
    );
  if (!REPOSITORY_RE.test(repository))
    throw new BootError(
      'CONFIG_INVALID',
      `invalid sandbox image repository ${JSON.stringify(repository)}: expected lowercase path components ` +
        `such as ${DEFAULT_REPOSITORY}`,
    );

  const entry = REGIONS[region];
  const pdata = PARTITIONS[partition];
  const account = entry?.account ?? pdata.defaultAccount;

  if (req.fips && entry?.fips !== true)
    throw new BootError(
      'CONFIG_INVALID',
      `ECR has no FIPS endpoint in ${region}${entry ? '' : ' (a region node-bootstrap does not know)'}: ` +
        `FIPS registries exist only in ${FIPS_REGIONS.join(', ')}`,
      {
        hint: `turn FIPS off (sandboxImage.fips / --fips) for ${region}, or set sandboxImage.image explicitly`,
      },
    );
  if (req.dualstack && pdata.dualstackSuffix === undefined)
    throw new BootError(
      'CONFIG_INVALID',
      `ECR has no documented dual-stack endpoint in ${region} (partition ${partition}): dual-stack registries ` +
        `exist only in the ${DUALSTACK_PARTITIONS.join(', ')} partitions`,
      { hint: `turn dual-stack off (sandboxImage.dualstack / --dualstack) for ${region}` },
    );

  const registry = req.dualstack
    ? `${account}.${req.fips ? 'dkr-ecr-fips' : 'dkr-ecr'}.${region}.${pdata.dualstackSuffix}`
    : `${account}.${req.fips ? 'dkr.ecr-fips' : 'dkr.ecr'}.${region}.${pdata.dnsSuffix}`;
  return { image: `${registry}/${repository}:${tag}`, registry, account, region, partition, known: !!entry };
}

/**
 * Recognises a private ECR registry host in any of its forms (IPv4, FIPS, dual-stack, dual-stack FIPS,
 * every partition's suffix); case-insensitive, a trailing dot or `:port` is ignored. Returns undefined
 * for anything else, including a suffix that does not belong to the region's partition. It reads the
 * form only: whether that region offers FIPS is resolveSandboxImage's business.
 */
export function parseEcrHost(host: string): EcrHost | undefined {
  const m = ECR_HOST_RE.exec(
    host
      .toLowerCase()
      .replace(/:\d{1,5}$/, '')
      .replace(/\.$/, ''),
  );
  if (!m) return undefined;
  const [, account, kind, region, suffix] = m as unknown as [string, string, string, string, string];
  if (!REGION_RE.test(region)) return undefined;
  const partition = derivePartition(region);
  const dualstack = kind.startsWith('dkr-ecr');
  const expected = dualstack ? PARTITIONS[partition].dualstackSuffix : PARTITIONS[partition].dnsSuffix;
  if (suffix !== expected) return undefined;
  return { account, region, fips: kind.endsWith('-fips'), dualstack, partition };
}
