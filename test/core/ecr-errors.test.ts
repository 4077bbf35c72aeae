import { ECRServiceException, ServerException } from '@aws-sdk/client-ecr';
import { describe, expect, it } from 'vitest';
import { classifyEcrError, type ImdsFinding, toEcrBootError } from '../../src/core/ecr-errors.js';

/** What the SDK throws for a JSON-protocol error it has no class for (e.g. AccessDeniedException). */
const service = (name: string, status: number, fault: 'client' | 'server', attempts = 1) =>
  new ECRServiceException({
    name,
    $fault: fault,
    $metadata: { httpStatusCode: status, attempts },
    message: `${name} from the testbed`,
  });
const node = (code: string, extra: object = {}) =>
  Object.assign(new Error(`connect ${code} 10.0.0.1:443`), { code, $metadata: { attempts: 3 }, ...extra });
const noCredentials = () =>
  Object.assign(new Error('Could not load credentials from any providers'), {
    name: 'CredentialsProviderError',
  });

describe('classifyEcrError: what the ECR API and the network answer', () => {
  it.each([
    [
      'AccessDeniedException 400',
      service('AccessDeniedException', 400, 'client'),
      'ECR_AUTH_FAILED',
      false,
      /ecr:GetAuthorizationToken/,
    ],
    [
      'UnrecognizedClientException',
      service('UnrecognizedClientException', 400, 'client'),
      'ECR_AUTH_FAILED',
      false,
      /clock/,
    ],
    [
      'ExpiredTokenException',
      service('ExpiredTokenException', 400, 'client'),
      'ECR_AUTH_FAILED',
      false,
      /clock/,
    ],
    [
      'ThrottlingException',
      service('ThrottlingException', 400, 'client', 3),
      'ECR_THROTTLED',
      true,
      /backoff/,
    ],
    ['HTTP 429', service('SomethingElse', 429, 'client'), 'ECR_THROTTLED', true, /backoff/],
    [
      'ServerException 500',
      new ServerException({ $metadata: { httpStatusCode: 500, attempts: 3 }, message: 'boom' }),
      'ECR_UNAVAILABLE',
      true,
      /server error/,
    ],
    [
      'unmodelled 503',
      service('ServiceUnavailableException', 503, 'server'),
      'ECR_UNAVAILABLE',
      true,
      /server error/,
    ],
    ['ECONNREFUSED', node('ECONNREFUSED'), 'ECR_UNAVAILABLE', true, /ecr\.api VPC endpoint/],
    ['ETIMEDOUT', node('ETIMEDOUT'), 'ECR_UNAVAILABLE', true, /ecr\.api VPC endpoint/],
    ['ECONNRESET', node('ECONNRESET'), 'ECR_UNAVAILABLE', true, /ecr\.api VPC endpoint/],
    [
      'ENOTFOUND',
      node('ENOTFOUND', { hostname: 'api.ecr.eu-west-1.amazonaws.com' }),
      'ECR_UNAVAILABLE',
      true,
      /DNS/,
    ],
    ['EAI_AGAIN', node('EAI_AGAIN'), 'ECR_UNAVAILABLE', true, /private DNS/],
    [
      'SDK request timeout',
      Object.assign(new Error('a request has exceeded the configured 10000 ms requestTimeout'), {
        name: 'TimeoutError',
        code: 'ETIMEDOUT',
      }),
      'ECR_UNAVAILABLE',
      true,
      /ecr\.api VPC endpoint/,
    ],
    [
      'InvalidParameterException',
      service('InvalidParameterException', 400, 'client'),
      'ECR_UNAVAILABLE',
      false,
      /registry account id/,
    ],
    [
      'abort',
      Object.assign(new Error('Request aborted'), { name: 'AbortError' }),
      'ABORTED',
      true,
      /stopped/,
    ],
    ['no credentials, no IMDS finding', noCredentials(), 'ECR_AUTH_FAILED', false, /instance profile/],
    ['a plain bug', new TypeError('x is not a function'), 'INTERNAL', false, /bug/],
    ['a thrown string', 'weird', 'INTERNAL', false, /bug/],
  ])('%s → %s', (_label, err, code, retryable, hint) => {
    const c = classifyEcrError(err, { region: 'eu-west-1' });
    expect(c.code).toBe(code);
    expect(c.retryable).toBe(retryable);
    expect(c.hint).toMatch(hint);
  });

  it('names the regional API host and the attempts made', () => {
    expect(classifyEcrError(node('ECONNREFUSED'), { region: 'eu-west-1' }).message).toBe(
      'cannot reach api.ecr.eu-west-1.amazonaws.com (ECONNREFUSED: connect ECONNREFUSED 10.0.0.1:443) after 3 attempts',
    );
    expect(classifyEcrError(node('ECONNREFUSED'), { region: 'cn-north-1' }).hint).toContain(
      'api.ecr.cn-north-1.amazonaws.com.cn',
    );
    expect(classifyEcrError(service('ThrottlingException', 400, 'client', 3)).message).toMatch(
      /after 3 attempts/,
    );
  });
});

describe('classifyEcrError: no credentials, explained by what IMDS says', () => {
  const failure = (reason: string, retryable: boolean): ImdsFinding => ({
    failure: reason,
    message: `imds says ${reason}`,
    hint: `fix ${reason}`,
    retryable,
  });
  it.each([
    ['no-role', failure('no-role', false), 'ECR_AUTH_FAILED', false],
    ['disabled', failure('disabled', false), 'ECR_AUTH_FAILED', false],
    ['refused', failure('refused', true), 'IMDS_UNAVAILABLE', true],
    ['token-timeout', failure('token-timeout', true), 'IMDS_UNAVAILABLE', true],
    ['token-refused', failure('token-refused', true), 'IMDS_UNAVAILABLE', true],
  ])('%s → %s', (reason, imds, code, retryable) => {
    const c = classifyEcrError(noCredentials(), { imds });
    expect(c).toEqual({
      code,
      retryable,
      message: `the AWS SDK found no credentials for the ECR API: imds says ${reason}`,
      hint: `fix ${reason}`,
    });
  });

  it('a role IMDS serves, yet no credentials: the role itself', () => {
    const c = classifyEcrError(noCredentials(), { imds: { role: 'node-role' } });
    expect(c.code).toBe('ECR_AUTH_FAILED');
    expect(c.message).toMatch(/role node-role/);
    expect(c.hint).toMatch(/trust policy/);
  });
});

describe('toEcrBootError', () => {
  it('keeps the SDK error as the cause and the class as code, hint and retryable', () => {
    const err = service('ThrottlingException', 400, 'client');
    const b = toEcrBootError(err);
    expect(b.toJSON()).toEqual({ ...classifyEcrError(err) });
    expect(b.cause).toBe(err);
    expect(b.exitCode).toBe(75);
  });
});

describe('classifyEcrError: through a proxy, and the VPC endpoint to name', () => {
  const proxy = {
    url: 'http://127.0.0.1:3128',
    target: 'api.ecr.us-west-2.amazonaws.com:443',
    variable: 'HTTPS_PROXY',
    source: 'the process environment',
  };
  it('direct: unreachable names the ecr.api endpoint', () => {
    const c = classifyEcrError(node('ETIMEDOUT'), { region: 'us-west-2' });
    expect(c).toMatchObject({ code: 'ECR_UNAVAILABLE', retryable: true });
    expect(c.hint).toContain('com.amazonaws.us-west-2.ecr.api');
  });
  it('a dead proxy: the message names the proxy and what set it, the hint the proxy and the ecr.api endpoint', () => {
    const c = classifyEcrError(node('ECONNREFUSED'), { region: 'us-west-2', proxy });
    expect(c).toMatchObject({ code: 'ECR_UNAVAILABLE', retryable: true });
    expect(c.message).toMatch(
      /^cannot reach api\.ecr\.us-west-2\.amazonaws\.com:443 through the proxy http:\/\/127\.0\.0\.1:3128 \(HTTPS_PROXY from the process environment\): ECONNREFUSED/,
    );
    expect(c.hint).toMatch(
      /http:\/\/127\.0\.0\.1:3128 is up .*com\.amazonaws\.us-west-2\.ecr\.api interface endpoint/,
    );
  });
  it.each([
    [407, false, /proxy authentication required/, /user:password/],
    [403, false, /CONNECT refused/, /allow CONNECT to api\.ecr\.us-west-2\.amazonaws\.com:443/],
    [502, true, /answered HTTP 502/, /ecr\.api VPC endpoint/],
  ])('the proxy answers %i: not an ECR answer', (status, retryable, message, hint) => {
    const err = new ECRServiceException({
      name: 'Unknown',
      $fault: status >= 500 ? 'server' : 'client',
      $metadata: { httpStatusCode: status },
      message: 'UnknownError',
    });
    const c = classifyEcrError(err, { region: 'us-west-2', proxy });
    expect(c).toMatchObject({ code: 'ECR_UNAVAILABLE', retryable });
    expect(c.message).toMatch(message);
    expect(c.hint).toMatch(hint);
  });
});
