/** `resolve-image`: the region's sandbox image, as data. Pure: no AWS, gRPC or D-Bus. */

import { resolveSandboxImage } from '../core/sandbox-image.js';
import { readEnv } from '../env.js';
import { BootError, EXIT } from '../errors.js';

export async function resolveImage(v: Record<string, string | boolean | undefined>): Promise<number> {
  const region = (v.region as string | undefined) ?? readEnv().awsRegion;
  if (!region) throw new BootError('USAGE', 'resolve-image needs --region REGION (or AWS_REGION)');
  const img = resolveSandboxImage({
    region,
    tag: v.tag as string | undefined,
    fips: v.fips === true,
    dualstack: v.dualstack === true,
  });
  if (v.json) {
    const { image, registry, account, region: r, partition } = img;
    process.stdout.write(`${JSON.stringify({ image, registry, account, region: r, partition })}\n`);
  } else {
    process.stdout.write(`${img.image}\n`);
    if (!img.known)
      process.stderr.write(
        `warning: ${region} is not in node-bootstrap's region table; used the ${img.partition} partition default account ${img.account}\n`,
      );
  }
  return EXIT.ok;
}
