/**
 * The stack params change what they say: `arch=arm64` builds and attaches an arm64-only layer and
 * runs every function on arm64; `predictAuth=iam` puts predict's routes behind IAM too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  functionKey,
  type PackageResult,
  packageService,
  resourcesOfType,
  routesToFunctions,
} from './package';

let pkg: PackageResult;

beforeAll(async () => {
  pkg = await packageService({ arch: 'arm64', predictAuth: 'iam', logRetentionDays: '7' });
}, 300_000);

afterAll(() => pkg?.cleanup());

describe('npm run package -- --param="arch=arm64" --param="predictAuth=iam"', () => {
  it('runs every function on arm64 with an arm64-only onnxruntime layer', () => {
    for (const [id, fn] of resourcesOfType(pkg.template, 'AWS::Lambda::Function'))
      expect(fn.Properties.Architectures, id).toEqual(['arm64']);
    expect(pkg.template.Resources.OnnxruntimeLambdaLayer!.Properties.CompatibleArchitectures).toEqual([
      'arm64',
    ]);
    const names = pkg.zip('onnxruntime').names();
    expect(names).toContain(
      'nodejs/node_modules/onnxruntime-node/bin/napi-v6/linux/arm64/onnxruntime_binding.node',
    );
    expect(names.filter((n) => n.includes('/linux/x64/'))).toEqual([]);
  });

  it('requires IAM on every route, predict included', () => {
    const routes = routesToFunctions(pkg.template);
    expect(Object.values(routes)).toContain('predict');
    for (const [id, route] of resourcesOfType(pkg.template, 'AWS::ApiGatewayV2::Route'))
      expect(route.Properties.AuthorizationType, id).toBe('AWS_IAM');
  });

  it('applies the log retention param to every function', () => {
    const groups = resourcesOfType(pkg.template, 'AWS::Logs::LogGroup');
    expect(groups.map(([id]) => functionKey(id.replace(/LogGroup$/, 'LambdaFunction'))).length).toBe(
      resourcesOfType(pkg.template, 'AWS::Lambda::Function').length,
    );
    for (const [, g] of groups) expect(g.Properties.RetentionInDays).toBe(7);
  });
});
