import * as fs from 'node:fs';
import * as path from 'node:path';
import { childEnv, runShell, serviceCopy } from '../start/local-server';
import { ZipFile } from './zip';

/** CloudFormation as written by `sls package` (only what the tests read is typed). */
export interface Template {
  Resources: Record<
    string,
    { Type: string; Properties: Record<string, unknown>; DependsOn?: string | string[] }
  >;
  Outputs?: Record<string, unknown>;
}

/** What one `sls package` run produced. */
export interface PackageResult {
  dir: string;
  template: Template;
  /** Zip of a function (by its serverless.yml key) or of a layer (by its layer key). */
  zip(name: string): ZipFile;
  cleanup(): void;
}

/**
 * Runs `npm run package` (= `sls package`) in a throw-away copy of the service with no AWS
 * credentials in the environment, passing `params` as `--param="k=v"`.
 *
 * @example
 * ```ts
 * const pkg = await packageService({ arch: 'arm64' });
 * pkg.template.Resources.PredictLambdaFunction;
 * ```
 */
export async function packageService(params: Record<string, string> = {}): Promise<PackageResult> {
  const dir = serviceCopy();
  const args = Object.entries(params)
    .map(([k, v]) => ` --param="${k}=${v}"`)
    .join('');
  const run = await runShell(`npm run package --silent --${args}`, dir, childEnv({}), 300_000);
  if (run.status !== 0) throw new Error(`sls package failed (${run.status}):\n${run.stdout}\n${run.stderr}`);
  const out = path.join(dir, '.serverless');
  const template = JSON.parse(
    fs.readFileSync(path.join(out, 'cloudformation-template-update-stack.json'), 'utf8'),
  ) as Template;
  return {
    dir,
    template,
    zip: (name) => ZipFile.open(path.join(out, `${name}.zip`)),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** Logical ID of a function's resource, as the framework names it (`registerVersion` → `RegisterVersionLambdaFunction`). */
export function functionLogicalId(key: string): string {
  return `${key[0]!.toUpperCase()}${key.slice(1)}LambdaFunction`;
}

/** serverless.yml key of a function logical ID (inverse of {@link functionLogicalId}). */
export function functionKey(logicalId: string): string {
  const base = logicalId.replace(/LambdaFunction$/, '');
  return `${base[0]!.toLowerCase()}${base.slice(1)}`;
}

/** Resources of one type. */
export function resourcesOfType(template: Template, type: string): [string, Template['Resources'][string]][] {
  return Object.entries(template.Resources).filter(([, r]) => r.Type === type);
}

/** Route key → serverless.yml function key, following Route → Integration → Lambda ARN. */
export function routesToFunctions(template: Template): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [, route] of resourcesOfType(template, 'AWS::ApiGatewayV2::Route')) {
    const target = route.Properties.Target as { 'Fn::Join': [string, [unknown, { Ref: string }]] };
    const integrationId = target['Fn::Join'][1][1].Ref;
    const uri = template.Resources[integrationId]!.Properties.IntegrationUri as {
      'Fn::GetAtt': [string, string];
    };
    out[route.Properties.RouteKey as string] = functionKey(uri['Fn::GetAtt'][0]);
  }
  return out;
}
