import { describe, expect, it } from 'vitest';
import {
  dnsSuffix,
  KNOWN_REGIONS,
  type Partition,
  parseEcrHost,
  partitionOf,
  resolveSandboxImage,
} from '../../src/core/sandbox-image.js';
import { BootError } from '../../src/errors.js';

// Written out by hand from the EKS "container image registries for add-ons" page and amazon-eks-ami,
// not derived from src/core/regions.ts, so that a typo in either shows up here.
const EXPECTED: readonly (readonly [region: string, host: string, partition: Partition])[] = [
  ['ap-northeast-1', '602401143452.dkr.ecr.ap-northeast-1.amazonaws.com', 'aws'],
  ['ap-northeast-2', '602401143452.dkr.ecr.ap-northeast-2.amazonaws.com', 'aws'],
  ['ap-northeast-3', '602401143452.dkr.ecr.ap-northeast-3.amazonaws.com', 'aws'],
  ['ap-south-1', '602401143452.dkr.ecr.ap-south-1.amazonaws.com', 'aws'],
  ['ap-southeast-1', '602401143452.dkr.ecr.ap-southeast-1.amazonaws.com', 'aws'],
  ['ap-southeast-2', '602401143452.dkr.ecr.ap-southeast-2.amazonaws.com', 'aws'],
  ['ca-central-1', '602401143452.dkr.ecr.ca-central-1.amazonaws.com', 'aws'],
  ['eu-central-1', '602401143452.dkr.ecr.eu-central-1.amazonaws.com', 'aws'],
  ['eu-north-1', '602401143452.dkr.ecr.eu-north-1.amazonaws.com', 'aws'],
  ['eu-west-1', '602401143452.dkr.ecr.eu-west-1.amazonaws.com', 'aws'],
  ['eu-west-2', '602401143452.dkr.ecr.eu-west-2.amazonaws.com', 'aws'],
  ['eu-west-3', '602401143452.dkr.ecr.eu-west-3.amazonaws.com', 'aws'],
  ['sa-east-1', '602401143452.dkr.ecr.sa-east-1.amazonaws.com', 'aws'],
  ['us-east-1', '602401143452.dkr.ecr.us-east-1.amazonaws.com', 'aws'],
  ['us-east-2', '602401143452.dkr.ecr.us-east-2.amazonaws.com', 'aws'],
  ['us-west-1', '602401143452.dkr.ecr.us-west-1.amazonaws.com', 'aws'],
  ['us-west-2', '602401143452.dkr.ecr.us-west-2.amazonaws.com', 'aws'],
  ['af-south-1', '877085696533.dkr.ecr.af-south-1.amazonaws.com', 'aws'],
  ['ap-east-1', '800184023465.dkr.ecr.ap-east-1.amazonaws.com', 'aws'],
  ['ap-east-2', '533267051163.dkr.ecr.ap-east-2.amazonaws.com', 'aws'],
  ['ap-south-2', '900889452093.dkr.ecr.ap-south-2.amazonaws.com', 'aws'],
  ['ap-southeast-3', '296578399912.dkr.ecr.ap-southeast-3.amazonaws.com', 'aws'],
  ['ap-southeast-4', '491585149902.dkr.ecr.ap-southeast-4.amazonaws.com', 'aws'],
  ['ap-southeast-5', '151610086707.dkr.ecr.ap-southeast-5.amazonaws.com', 'aws'],
  ['ap-southeast-6', '333609536671.dkr.ecr.ap-southeast-6.amazonaws.com', 'aws'],
  ['ap-southeast-7', '121268973566.dkr.ecr.ap-southeast-7.amazonaws.com', 'aws'],
  ['ca-west-1', '761377655185.dkr.ecr.ca-west-1.amazonaws.com', 'aws'],
  ['eu-central-2', '900612956339.dkr.ecr.eu-central-2.amazonaws.com', 'aws'],
  ['eu-south-1', '590381155156.dkr.ecr.eu-south-1.amazonaws.com', 'aws'],
  ['eu-south-2', '455263428931.dkr.ecr.eu-south-2.amazonaws.com', 'aws'],
  ['il-central-1', '066635153087.dkr.ecr.il-central-1.amazonaws.com', 'aws'],
  ['me-central-1', '759879836304.dkr.ecr.me-central-1.amazonaws.com', 'aws'],
  ['me-south-1', '558608220178.dkr.ecr.me-south-1.amazonaws.com', 'aws'],
  ['mx-central-1', '730335286997.dkr.ecr.mx-central-1.amazonaws.com', 'aws'],
  ['cn-north-1', '918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn', 'aws-cn'],
  ['cn-northwest-1', '961992271922.dkr.ecr.cn-northwest-1.amazonaws.com.cn', 'aws-cn'],
  ['us-gov-east-1', '151742754352.dkr.ecr.us-gov-east-1.amazonaws.com', 'aws-us-gov'],
  ['us-gov-west-1', '013241004608.dkr.ecr.us-gov-west-1.amazonaws.com', 'aws-us-gov'],
  ['us-iso-east-1', '725322719131.dkr.ecr.us-iso-east-1.c2s.ic.gov', 'aws-iso'],
  ['us-iso-west-1', '608367168043.dkr.ecr.us-iso-west-1.c2s.ic.gov', 'aws-iso'],
  ['us-isob-east-1', '187977181151.dkr.ecr.us-isob-east-1.sc2s.sgov.gov', 'aws-iso-b'],
  ['us-isob-west-1', '321162350305.dkr.ecr.us-isob-west-1.sc2s.sgov.gov', 'aws-iso-b'],
  ['eu-isoe-west-1', '249663109785.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk', 'aws-iso-e'],
  ['us-isof-east-1', '171035529773.dkr.ecr.us-isof-east-1.csp.hci.ic.gov', 'aws-iso-f'],
  ['us-isof-south-1', '676585237158.dkr.ecr.us-isof-south-1.csp.hci.ic.gov', 'aws-iso-f'],
  ['eusc-de-east-1', '877088126301.dkr.ecr.eusc-de-east-1.amazonaws.eu', 'aws-eusc'],
];

const FIPS_REGIONS = ['us-east-1', 'us-east-2', 'us-west-1', 'us-west-2', 'us-gov-east-1', 'us-gov-west-1'];

function configError(fn: () => unknown): BootError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BootError);
    expect((err as BootError).code).toBe('CONFIG_INVALID');
    return err as BootError;
  }
  throw new Error('expected a CONFIG_INVALID BootError');
}

describe('resolveSandboxImage: the region table', () => {
  it('the table and the expectations list the same regions', () => {
    expect([...KNOWN_REGIONS].sort()).toEqual(EXPECTED.map(([r]) => r).sort());
  });

  it.each(EXPECTED)('%s → %s', (region, host, partition) => {
    const img = resolveSandboxImage({ region });
    expect(img).toEqual({
      image: `${host}/eks/pause:3.10`,
      registry: host,
      account: host.slice(0, 12),
      region,
      partition,
      known: true,
    });
    expect(partitionOf(region)).toBe(partition);
  });

  it('the registry is always in the requested region (never another one)', () => {
    for (const region of KNOWN_REGIONS) {
      for (const fips of [false, true]) {
        for (const dualstack of [false, true]) {
          let img: ReturnType<typeof resolveSandboxImage>;
          try {
            img = resolveSandboxImage({ region, fips, dualstack });
          } catch {
            continue;
          }
          expect(img.region).toBe(region);
          expect(parseEcrHost(img.registry)?.region).toBe(region);
        }
      }
    }
  });

  it('honours tag and repository', () => {
    expect(
      resolveSandboxImage({ region: 'me-south-1', tag: '3.9', repository: 'eks/pause-windows' }).image,
    ).toBe('558608220178.dkr.ecr.me-south-1.amazonaws.com/eks/pause-windows:3.9');
  });
});

describe('resolveSandboxImage: FIPS', () => {
  it.each([
    ['us-east-1', '602401143452.dkr.ecr-fips.us-east-1.amazonaws.com'],
    ['us-east-2', '602401143452.dkr.ecr-fips.us-east-2.amazonaws.com'],
    ['us-west-1', '602401143452.dkr.ecr-fips.us-west-1.amazonaws.com'],
    ['us-west-2', '602401143452.dkr.ecr-fips.us-west-2.amazonaws.com'],
    ['us-gov-east-1', '151742754352.dkr.ecr-fips.us-gov-east-1.amazonaws.com'],
    ['us-gov-west-1', '013241004608.dkr.ecr-fips.us-gov-west-1.amazonaws.com'],
  ])('%s → %s', (region, host) => {
    expect(resolveSandboxImage({ region, fips: true }).registry).toBe(host);
  });

  it('is an error, not a fallback, everywhere else', () => {
    for (const region of KNOWN_REGIONS.filter((r) => !FIPS_REGIONS.includes(r))) {
      const err = configError(() => resolveSandboxImage({ region, fips: true }));
      expect(err.message).toContain(region);
      expect(err.message).toContain(FIPS_REGIONS.join(', '));
    }
  });

  it('is an error for a region the table does not know', () => {
    const err = configError(() => resolveSandboxImage({ region: 'us-east-7', fips: true }));
    expect(err.message).toMatch(/us-east-7.*does not know/);
  });

  it('fips: false is the plain endpoint', () => {
    expect(resolveSandboxImage({ region: 'ca-central-1', fips: false }).registry).toBe(
      '602401143452.dkr.ecr.ca-central-1.amazonaws.com',
    );
  });
});

describe('resolveSandboxImage: dual-stack', () => {
  it.each([
    ['us-west-2', false, '602401143452.dkr-ecr.us-west-2.on.aws'],
    ['me-south-1', false, '558608220178.dkr-ecr.me-south-1.on.aws'],
    ['ap-east-2', false, '533267051163.dkr-ecr.ap-east-2.on.aws'],
    ['us-gov-east-1', false, '151742754352.dkr-ecr.us-gov-east-1.on.aws'],
    ['cn-north-1', false, '918309763551.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn'],
    ['cn-northwest-1', false, '961992271922.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn'],
    ['us-east-1', true, '602401143452.dkr-ecr-fips.us-east-1.on.aws'],
    ['us-gov-west-1', true, '013241004608.dkr-ecr-fips.us-gov-west-1.on.aws'],
  ] as const)('%s (fips %s) → %s', (region, fips, host) => {
    expect(resolveSandboxImage({ region, fips, dualstack: true }).registry).toBe(host);
  });

  it.each(['us-iso-east-1', 'us-isob-east-1', 'eu-isoe-west-1', 'us-isof-south-1', 'eusc-de-east-1'])(
    'is an error in %s (no documented dual-stack registry)',
    (region) => {
      const err = configError(() => resolveSandboxImage({ region, dualstack: true }));
      expect(err.message).toContain(region);
      expect(err.message).toContain('aws, aws-cn, aws-us-gov');
    },
  );
});

describe('resolveSandboxImage: regions the table does not know', () => {
  it.each([
    ['eu-west-9', 'aws', '602401143452.dkr.ecr.eu-west-9.amazonaws.com'],
    ['xx-south-3', 'aws', '602401143452.dkr.ecr.xx-south-3.amazonaws.com'],
    ['cn-south-1', 'aws-cn', '961992271922.dkr.ecr.cn-south-1.amazonaws.com.cn'],
    ['us-gov-central-1', 'aws-us-gov', '013241004608.dkr.ecr.us-gov-central-1.amazonaws.com'],
    ['us-iso-north-1', 'aws-iso', '725322719131.dkr.ecr.us-iso-north-1.c2s.ic.gov'],
    ['us-isob-north-1', 'aws-iso-b', '187977181151.dkr.ecr.us-isob-north-1.sc2s.sgov.gov'],
    ['eu-isoe-south-1', 'aws-iso-e', '249663109785.dkr.ecr.eu-isoe-south-1.cloud.adc-e.uk'],
    ['us-isof-west-1', 'aws-iso-f', '676585237158.dkr.ecr.us-isof-west-1.csp.hci.ic.gov'],
    ['eusc-de-west-1', 'aws-eusc', '877088126301.dkr.ecr.eusc-de-west-1.amazonaws.eu'],
  ] as const)('%s → %s default account, own region, known: false', (region, partition, host) => {
    const img = resolveSandboxImage({ region });
    expect(img).toMatchObject({ registry: host, region, partition, known: false });
  });

  it('dual-stack still works where the partition documents it', () => {
    expect(resolveSandboxImage({ region: 'ap-west-9', dualstack: true })).toMatchObject({
      registry: '602401143452.dkr-ecr.ap-west-9.on.aws',
      known: false,
    });
  });
});

describe('invalid input', () => {
  it.each([
    '',
    'US-EAST-1',
    'us-east-1a',
    'useast1',
    'us-east',
    ' us-east-1',
    'us-east-1 ',
    'us_east_1',
    'us-east-1.evil.com',
    'global',
  ])('region %j is CONFIG_INVALID, naming it', (region) => {
    const err = configError(() => resolveSandboxImage({ region }));
    expect(err.message).toContain(JSON.stringify(region));
    expect(err.message).toContain('us-east-1, eu-west-1');
    configError(() => partitionOf(region));
  });

  it('says when the region looks like an availability zone', () => {
    expect(configError(() => resolveSandboxImage({ region: 'eu-west-1b' })).message).toContain(
      'availability zone',
    );
  });

  it.each(['', '-3.10', '.3', 'a b', 'x'.repeat(129), '3.10/evil'])('tag %j is CONFIG_INVALID', (tag) => {
    configError(() => resolveSandboxImage({ region: 'us-west-2', tag }));
  });

  it.each(['', 'EKS/pause', '/eks/pause', 'eks//pause', 'eks/pause/', 'eks/pause:3.10'])(
    'repository %j is CONFIG_INVALID',
    (repository) => {
      configError(() => resolveSandboxImage({ region: 'us-west-2', repository }));
    },
  );
});

describe('partitionOf / dnsSuffix', () => {
  it.each([
    ['aws', 'amazonaws.com'],
    ['aws-cn', 'amazonaws.com.cn'],
    ['aws-us-gov', 'amazonaws.com'],
    ['aws-iso', 'c2s.ic.gov'],
    ['aws-iso-b', 'sc2s.sgov.gov'],
    ['aws-iso-e', 'cloud.adc-e.uk'],
    ['aws-iso-f', 'csp.hci.ic.gov'],
    ['aws-eusc', 'amazonaws.eu'],
  ] as const)('%s → %s', (partition, suffix) => {
    expect(dnsSuffix(partition)).toBe(suffix);
  });

  it('prefixes pick the partition, most specific first', () => {
    expect(partitionOf('us-iso-east-1')).toBe('aws-iso');
    expect(partitionOf('us-isob-east-1')).toBe('aws-iso-b');
    expect(partitionOf('us-isof-east-1')).toBe('aws-iso-f');
    expect(partitionOf('eu-isoe-west-1')).toBe('aws-iso-e');
    expect(partitionOf('eusc-de-east-1')).toBe('aws-eusc');
    expect(partitionOf('eu-south-1')).toBe('aws');
    expect(partitionOf('us-east-1')).toBe('aws');
  });
});

describe('parseEcrHost', () => {
  it('round-trips every resolved host, in every form the region offers', () => {
    let checked = 0;
    for (const region of KNOWN_REGIONS) {
      for (const fips of [false, true]) {
        for (const dualstack of [false, true]) {
          let img: ReturnType<typeof resolveSandboxImage>;
          try {
            img = resolveSandboxImage({ region, fips, dualstack });
          } catch {
            continue;
          }
          expect(parseEcrHost(img.registry)).toEqual({
            account: img.account,
            region,
            fips,
            dualstack,
            partition: img.partition,
          });
          checked++;
        }
      }
    }
    // 46 IPv4 + 6 FIPS + 38 dual-stack (aws, aws-cn, aws-us-gov) + 6 dual-stack FIPS
    expect(checked).toBe(46 + 6 + 38 + 6);
  });

  it('is case-insensitive and ignores a port or a trailing dot', () => {
    const want = {
      account: '558608220178',
      region: 'me-south-1',
      fips: false,
      dualstack: false,
      partition: 'aws',
    };
    expect(parseEcrHost('558608220178.DKR.ECR.ME-SOUTH-1.AMAZONAWS.COM')).toEqual(want);
    expect(parseEcrHost('558608220178.dkr.ecr.me-south-1.amazonaws.com:443')).toEqual(want);
    expect(parseEcrHost('558608220178.dkr.ecr.me-south-1.amazonaws.com.')).toEqual(want);
  });

  it('reads hosts of regions the table does not know', () => {
    expect(parseEcrHost('111122223333.dkr.ecr.eu-west-9.amazonaws.com')).toEqual({
      account: '111122223333',
      region: 'eu-west-9',
      fips: false,
      dualstack: false,
      partition: 'aws',
    });
  });

  it.each([
    'public.ecr.aws',
    'registry.k8s.io',
    'localhost:5000',
    '602401143452.dkr.ecr.us-west-2.amazonaws.com.evil.com',
    '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause',
    '60240114345.dkr.ecr.us-west-2.amazonaws.com',
    '6024011434521.dkr.ecr.us-west-2.amazonaws.com',
    '602401143452.dkr.ecr.us-west-2.amazonaws.com.cn',
    '918309763551.dkr.ecr.cn-north-1.amazonaws.com',
    '602401143452.dkr.ecr.us-west-2.on.aws',
    '602401143452.dkr-ecr.us-west-2.amazonaws.com',
    '918309763551.dkr-ecr.cn-north-1.on.aws',
    '725322719131.dkr.ecr.us-iso-east-1.amazonaws.com',
    '725322719131.dkr-ecr.us-iso-east-1.on.aws',
    '602401143452.dkr.ecr.not_a_region.amazonaws.com',
    '602401143452.ecr.us-west-2.amazonaws.com',
    '',
  ])('%j is not a private ECR registry host', (host) => {
    expect(parseEcrHost(host)).toBeUndefined();
  });
});
