/**
 * `predictAuth` accepts `none` and `iam` only (package.test.ts and package-arm64.test.ts package
 * both): any other value must stop the package (and so the deploy) rather than fall through the
 * authorizer lookup's `, null` and leave predict open.
 */
import { describe, expect, it } from 'vitest';
import { packageService } from './package';

describe('npm run package -- --param="predictAuth=<unknown>"', () => {
  it.each(['IAM', 'aws_iam'])(
    'fails for predictAuth=%s, naming the setting',
    async (value) => {
      const failure = await packageService({ predictAuth: value }).then(
        (pkg) => {
          pkg.cleanup();
          return undefined;
        },
        (e: Error) => e,
      );
      expect(failure?.message).toMatch(/sls package failed/);
      expect(failure?.message).toMatch(/custom\.predictAuth/);
    },
    300_000,
  );
});
