/**
 * `generateAuth` (the generate Function URL's auth) accepts `iam` (the default, package.test.ts)
 * and `none` only: `none` makes a public URL (AuthType NONE and the two public invoke permissions
 * a URL needs), anything else stops the package (and so the deploy) naming the setting.
 */
import { describe, expect, it } from 'vitest';
import { functionLogicalId, packageService, resourcesOfType } from './package';

describe('npm run package -- --param="generateAuth=…"', () => {
  it('none: a public streaming URL, invocable only through the URL', async () => {
    const pkg = await packageService({ generateAuth: 'none' });
    try {
      const t = pkg.template;
      const urls = resourcesOfType(t, 'AWS::Lambda::Url').map(([, u]) => u.Properties);
      expect(urls).toEqual([expect.objectContaining({ AuthType: 'NONE', InvokeMode: 'RESPONSE_STREAM' })]);
      const open = resourcesOfType(t, 'AWS::Lambda::Permission')
        .map(([, p]) => p.Properties)
        .filter((p) => p.Principal === '*');
      const target = { 'Fn::GetAtt': [functionLogicalId('generate'), 'Arn'] };
      expect(open).toEqual([
        {
          FunctionName: target,
          Action: 'lambda:InvokeFunctionUrl',
          Principal: '*',
          FunctionUrlAuthType: 'NONE',
        },
        {
          FunctionName: target,
          Action: 'lambda:InvokeFunction',
          Principal: '*',
          InvokedViaFunctionUrl: true,
        },
      ]);
    } finally {
      pkg.cleanup();
    }
  }, 300_000);

  it.each(['IAM', 'aws_iam', 'public'])(
    'fails for generateAuth=%s, naming the setting',
    async (value) => {
      const failure = await packageService({ generateAuth: value }).then(
        (pkg) => {
          pkg.cleanup();
          return undefined;
        },
        (e: Error) => e,
      );
      expect(failure?.message).toMatch(/sls package failed/);
      expect(failure?.message).toMatch(/custom\.generateAuth/);
    },
    300_000,
  );
});
