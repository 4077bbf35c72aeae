/**
 * Where each AWS region's EKS sandbox ("pause") image lives: data only, no logic.
 *
 * Public references the facts below were checked against (written here as data, nothing copied):
 *  - Amazon EKS User Guide, "View Amazon container image registries for Amazon EKS add-ons"
 *    https://docs.aws.amazon.com/eks/latest/userguide/add-ons-images.html
 *    (source: github.com/awsdocs/amazon-eks-user-guide, latest/ug/workloads/add-ons-images.adoc)
 *  - github.com/awslabs/amazon-eks-ami: templates/al2/runtime/get-ecr-uri.sh (last version before AL2
 *    was removed; it alone lists the ISO, ISO-B west, ISO-E, ISO-F and EUSC accounts) and the earlier
 *    nodeadm/internal/aws/ecr/ecr.go region → account map; nodeadm/internal/kubelet/
 *    image-credential-provider.go (the ECR host forms a node must recognise).
 *  - AWS General Reference, "Amazon ECR endpoints and quotas" https://docs.aws.amazon.com/general/latest/gr/ecr.html
 *    and the Amazon ECR User Guide, "Making requests to Amazon ECR registries" (dual-stack host form)
 *    https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-requests.html
 *  - The AWS SDK partition metadata (partitions.json / botocore endpoints.json): partition ids, region
 *    prefixes, DNS suffixes, and which regions have ECR FIPS endpoints.
 *  - kubernetes/cloud-provider-aws ecr-credential-provider tests (dual-stack China / GovCloud FIPS forms).
 *
 * Things worth knowing before editing:
 *  - Every commercial region that is enabled by default shares account 602401143452; every opt-in
 *    region, China, GovCloud, the ISO partitions and EUSC has its OWN account. Never assume an opt-in
 *    region uses 602401143452: the registry would be in the wrong account and the pull fails.
 *  - The EKS user guide lists ap-east-2's registry with the host "…ecr.ap-east-1…": a typo there; the
 *    amazon-eks-ami script and the GuardDuty agent registry table both use ap-east-2 in the host.
 *  - amazon-eks-ami falls back to ANOTHER region (us-west-2, cn-northwest-1, us-gov-west-1, …) for
 *    regions it does not know. node-bootstrap never changes the region (cross-region pulls are the
 *    incident this module exists to prevent); it keeps the node's region and uses the partition's
 *    default account below, flagged `known: false`.
 */

export type Partition =
  | 'aws'
  | 'aws-cn'
  | 'aws-us-gov'
  | 'aws-iso'
  | 'aws-iso-b'
  | 'aws-iso-e'
  | 'aws-iso-f'
  | 'aws-eusc';

export interface PartitionData {
  /** DNS suffix of the partition's IPv4 ECR registries: `<acct>.dkr.ecr.<region>.<dnsSuffix>`. */
  readonly dnsSuffix: string;
  /** Suffix of ECR's dual-stack registry hosts `<acct>.dkr-ecr.<region>.<suffix>`, where documented. */
  readonly dualstackSuffix?: string;
  /** Account used for a region of this partition that the table below does not list. */
  readonly defaultAccount: string;
}

/** The account shared by every commercial region that is enabled by default. */
const COMMERCIAL = '602401143452';

export const PARTITIONS: Readonly<Record<Partition, PartitionData>> = {
  aws: { dnsSuffix: 'amazonaws.com', dualstackSuffix: 'on.aws', defaultAccount: COMMERCIAL },
  'aws-cn': {
    dnsSuffix: 'amazonaws.com.cn',
    dualstackSuffix: 'on.amazonwebservices.com.cn',
    // amazon-eks-ami's fallback for unlisted cn-* regions (cn-northwest-1's account).
    defaultAccount: '961992271922',
  },
  'aws-us-gov': { dnsSuffix: 'amazonaws.com', dualstackSuffix: 'on.aws', defaultAccount: '013241004608' },
  'aws-iso': { dnsSuffix: 'c2s.ic.gov', defaultAccount: '725322719131' },
  'aws-iso-b': { dnsSuffix: 'sc2s.sgov.gov', defaultAccount: '187977181151' },
  'aws-iso-e': { dnsSuffix: 'cloud.adc-e.uk', defaultAccount: '249663109785' },
  'aws-iso-f': { dnsSuffix: 'csp.hci.ic.gov', defaultAccount: '676585237158' },
  'aws-eusc': { dnsSuffix: 'amazonaws.eu', defaultAccount: '877088126301' },
};

/**
 * Region-name prefixes that pick a partition, most specific first; anything else is `aws`.
 * (`us-iso-` cannot match `us-isob-…` or `us-isof-…`: the dash follows "iso" directly.)
 */
export const PARTITION_PREFIXES: readonly (readonly [prefix: string, partition: Partition])[] = [
  ['us-gov-', 'aws-us-gov'],
  ['us-iso-', 'aws-iso'],
  ['us-isob-', 'aws-iso-b'],
  ['eu-isoe-', 'aws-iso-e'],
  ['us-isof-', 'aws-iso-f'],
  ['eusc-', 'aws-eusc'],
  ['cn-', 'aws-cn'],
];

export interface RegionData {
  /** AWS account that owns the EKS add-on registry (eks/pause, …) in this region. */
  readonly account: string;
  /** ECR has FIPS registry endpoints (`dkr.ecr-fips`, `dkr-ecr-fips`) in this region. */
  readonly fips?: true;
}

/**
 * Region → EKS registry account. The partition of a region follows from its name
 * (PARTITION_PREFIXES); the test suite checks every entry resolves into the right one.
 */
export const REGIONS: Readonly<Record<string, RegionData>> = {
  // aws: enabled by default, shared account
  'ap-northeast-1': { account: COMMERCIAL },
  'ap-northeast-2': { account: COMMERCIAL },
  'ap-northeast-3': { account: COMMERCIAL },
  'ap-south-1': { account: COMMERCIAL },
  'ap-southeast-1': { account: COMMERCIAL },
  'ap-southeast-2': { account: COMMERCIAL },
  'ca-central-1': { account: COMMERCIAL },
  'eu-central-1': { account: COMMERCIAL },
  'eu-north-1': { account: COMMERCIAL },
  'eu-west-1': { account: COMMERCIAL },
  'eu-west-2': { account: COMMERCIAL },
  'eu-west-3': { account: COMMERCIAL },
  'sa-east-1': { account: COMMERCIAL },
  'us-east-1': { account: COMMERCIAL, fips: true },
  'us-east-2': { account: COMMERCIAL, fips: true },
  'us-west-1': { account: COMMERCIAL, fips: true },
  'us-west-2': { account: COMMERCIAL, fips: true },

  // aws: opt-in regions, one account each
  'af-south-1': { account: '877085696533' },
  'ap-east-1': { account: '800184023465' },
  'ap-east-2': { account: '533267051163' },
  'ap-south-2': { account: '900889452093' },
  'ap-southeast-3': { account: '296578399912' },
  'ap-southeast-4': { account: '491585149902' },
  'ap-southeast-5': { account: '151610086707' },
  'ap-southeast-6': { account: '333609536671' },
  'ap-southeast-7': { account: '121268973566' },
  'ca-west-1': { account: '761377655185' },
  'eu-central-2': { account: '900612956339' },
  'eu-south-1': { account: '590381155156' },
  'eu-south-2': { account: '455263428931' },
  'il-central-1': { account: '066635153087' },
  'me-central-1': { account: '759879836304' },
  'me-south-1': { account: '558608220178' },
  'mx-central-1': { account: '730335286997' },

  // aws-cn
  'cn-north-1': { account: '918309763551' },
  'cn-northwest-1': { account: '961992271922' },

  // aws-us-gov
  'us-gov-east-1': { account: '151742754352', fips: true },
  'us-gov-west-1': { account: '013241004608', fips: true },

  // aws-iso, aws-iso-b, aws-iso-e, aws-iso-f (accounts from amazon-eks-ami only)
  'us-iso-east-1': { account: '725322719131' },
  'us-iso-west-1': { account: '608367168043' },
  'us-isob-east-1': { account: '187977181151' },
  'us-isob-west-1': { account: '321162350305' },
  'eu-isoe-west-1': { account: '249663109785' },
  'us-isof-east-1': { account: '171035529773' },
  'us-isof-south-1': { account: '676585237158' },

  // aws-eusc (account from amazon-eks-ami only)
  'eusc-de-east-1': { account: '877088126301' },
};
