/**
 * `npm run package` (sls package, offline, no AWS credentials) and the CloudFormation template it
 * writes: routes ↔ functions, events, layer attachments, IAM scoped to the bucket, bucket
 * settings, alarms and dashboard, log retention; and Lambda's 250 MB unzipped size limit.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PREDICT_METRICS } from '../../shared/inference/service';
import { ROOT } from '../start/local-server';
import { LAMBDA_MALLOC_ENV } from '../support/lambda-env';
import {
  functionKey,
  functionLogicalId,
  type PackageResult,
  packageService,
  resourcesOfType,
  routesToFunctions,
  type Template,
} from './package';

/** The route table of the project (common ground): the specification this template must implement. */
const EXPECTED_ROUTES: Record<string, string> = {
  'GET /v2': 'predict',
  'GET /v2/health/live': 'predict',
  'GET /v2/health/ready': 'predict',
  'GET /v2/models/{name}': 'predict',
  'GET /v2/models/{name}/ready': 'predict',
  'GET /v2/models/{name}/versions/{version}': 'predict',
  'GET /v2/models/{name}/versions/{version}/ready': 'predict',
  'POST /v2/models/{name}/infer': 'predict',
  'POST /v2/models/{name}/versions/{version}/infer': 'predict',
  'POST /v2/models/{name}/explain': 'predict',
  'POST /v2/models/{name}/versions/{version}/explain': 'predict',
  'POST /v2/models/{name}/infer-async': 'predict',
  'POST /v2/models/{name}/versions/{version}/infer-async': 'predict',
  'POST /v2/async/inputs': 'predict',
  'GET /v2/async/{id}': 'predict',
  'GET /v2/async/{id}/output': 'predict',
  'POST /models/{name}/uploads': 'registerVersion',
  'PUT /models/{name}/uploads/{id}': 'registerVersion',
  'POST /models/{name}/upload-sessions': 'registerVersion',
  'POST /models/{name}/upload-sessions/{id}/complete': 'registerVersion',
  'DELETE /models/{name}/upload-sessions/{id}': 'registerVersion',
  'POST /models/{name}/versions': 'registerVersion',
  'PUT /models/{name}/aliases/{alias}': 'rollback',
  'DELETE /models/{name}/aliases/{alias}': 'rollback',
  'POST /models/{name}/rollback': 'rollback',
  'POST /models/{name}/versions/{version}/status': 'rollback',
  'GET /models': 'catalog',
  'GET /models/{name}': 'catalog',
  'GET /models/{name}/versions': 'catalog',
  'GET /models/{name}/versions/{version}': 'catalog',
  'GET /models/{name}/history': 'catalog',
  'GET /models/{name}/versions/{version}/download': 'catalog',
  'GET /models/{name}/reports': 'catalog',
  'GET /models/{name}/reports/latest': 'catalog',
  'GET /models/{name}/optimizations': 'catalog',
  'POST /models/{name}/versions/{version}/optimize': 'optimize',
  'GET /models/{name}/optimizations/{job}': 'optimize',
  'POST /models/{name}/feedback': 'feedback',
  'POST /models/{name}/monitor/runs': 'monitor',
};
const FUNCTIONS = [
  'predict',
  'predictAsync',
  'generate',
  'registerVersion',
  'rollback',
  'catalog',
  'optimize',
  'monitor',
  'feedback',
];
const LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024;

let pkg: PackageResult;
let t: Template;

beforeAll(async () => {
  pkg = await packageService();
  t = pkg.template;
}, 300_000);

afterAll(() => pkg?.cleanup());

/** The bucket's name as CloudFormation will build it (a Fn::Sub string). */
function bucketNameSub(): string {
  return (t.Resources.ModelBucket!.Properties.BucketName as { 'Fn::Sub': string })['Fn::Sub'];
}

/** Every statement of a role's inline policies. */
function statementsOf(roleId: string): {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, unknown>;
}[] {
  const role = t.Resources[roleId]!;
  return (role.Properties.Policies as { PolicyDocument: { Statement: [] } }[]).flatMap(
    (p) => p.PolicyDocument.Statement,
  );
}

function list<T>(v: T | T[]): T[] {
  return Array.isArray(v) ? v : [v];
}

/** A Resource as a plain string: Fn::Sub templates are compared as written. */
function resourceStrings(resource: unknown): string[] {
  return list(resource as unknown[]).map((r) =>
    typeof r === 'string' ? r : ((r as { 'Fn::Sub'?: string })['Fn::Sub'] ?? JSON.stringify(r)),
  );
}

describe('npm run package (offline)', () => {
  it('maps every route of the API to the function that owns it, and nothing else', () => {
    expect(routesToFunctions(t)).toEqual(EXPECTED_ROUTES);
  });

  it('packages one function per folder, each a real handler file, on nodejs22.x', () => {
    const fns = resourcesOfType(t, 'AWS::Lambda::Function').map(([id]) => functionKey(id));
    expect(fns.sort()).toEqual([...FUNCTIONS].sort());
    for (const key of FUNCTIONS) {
      const fn = t.Resources[functionLogicalId(key)]!.Properties;
      expect(fn.Runtime).toBe('nodejs22.x');
      expect(fn.Architectures).toEqual(['x86_64']);
      const [file] = (fn.Handler as string).split(/\.(?=handler$)/);
      expect(fs.existsSync(path.join(ROOT, `${file}.ts`)), `${file}.ts`).toBe(true);
      expect(pkg.zip(key).names()).toContain(`${file}.js`);
    }
  });

  it('protects management routes with IAM; predict is open by default (predictAuth=none)', () => {
    for (const [, route] of resourcesOfType(t, 'AWS::ApiGatewayV2::Route')) {
      const owner = EXPECTED_ROUTES[route.Properties.RouteKey as string];
      expect(route.Properties.AuthorizationType ?? 'NONE', route.Properties.RouteKey as string).toBe(
        owner === 'predict' ? 'NONE' : 'AWS_IAM',
      );
    }
  });

  it('triggers register-version on ObjectCreated under incoming/ of the model bucket, without a dependency cycle', () => {
    const bucket = t.Resources.ModelBucket!;
    const [notification] = (
      bucket.Properties.NotificationConfiguration as {
        LambdaConfigurations: [{ Event: string; Filter: { S3Key: { Rules: unknown } }; Function: unknown }];
      }
    ).LambdaConfigurations;
    expect(notification.Event).toBe('s3:ObjectCreated:*');
    expect(notification.Filter.S3Key.Rules).toEqual([{ Name: 'prefix', Value: 'incoming/' }]);
    expect(notification.Function).toEqual({ 'Fn::GetAtt': ['RegisterVersionLambdaFunction', 'Arn'] });
    // S3 validates the permission when the notification is created: the bucket must wait for it,
    // and the permission must name the bucket by string (a Ref would close a cycle).
    expect(list(bucket.DependsOn!)).toContain('RegisterVersionIncomingPermission');
    const permission = t.Resources.RegisterVersionIncomingPermission!.Properties;
    expect(permission.Principal).toBe('s3.amazonaws.com');
    expect(permission.FunctionName).toEqual({ 'Fn::GetAtt': ['RegisterVersionLambdaFunction', 'Arn'] });
    expect(permission.SourceArn).toEqual({ 'Fn::Sub': `arn:\${AWS::Partition}:s3:::${bucketNameSub()}` });
    expect(bucketNameSub()).toBe('maas-dev-${AWS::AccountId}-${AWS::Region}');
    // Every function finds the store in the same bucket.
    for (const key of FUNCTIONS) {
      const env = t.Resources[functionLogicalId(key)]!.Properties.Environment as {
        Variables: Record<string, unknown>;
      };
      expect(env.Variables.MAAS_STORE).toEqual({
        'Fn::Sub': `s3://${bucketNameSub()}`,
      });
      // The allocator the memory tests measure with (test/predict/session-memory.test.ts).
      expect(env.Variables).toMatchObject(LAMBDA_MALLOC_ENV);
    }
  });

  it('runs the monitor every 5 minutes, and the optimize function sweeps stale jobs on its own schedule', () => {
    const rules = resourcesOfType(t, 'AWS::Events::Rule').map(([, rule]) => rule.Properties);
    const target = (rule: (typeof rules)[number]) => (rule.Targets as [{ Arn: unknown; Input?: string }])[0];
    expect(rules).toHaveLength(2);
    const monitor = rules.find((r) => JSON.stringify(target(r).Arn).includes('MonitorLambdaFunction'))!;
    expect(monitor.ScheduleExpression).toBe('rate(5 minutes)');
    expect(target(monitor).Input).toBeUndefined();
    // The schedule fans out in batches of MAAS_MONITOR_BATCH_SIZE, one asynchronous self-invocation each,
    // retried twice by Lambda when a batch fails (functions/monitor/fanout.ts).
    const monitorFn = t.Resources[functionLogicalId('monitor')]!.Properties.Environment as {
      Variables: Record<string, unknown>;
    };
    expect(monitorFn.Variables.MAAS_MONITOR_BATCH_SIZE).toBe('100');
    const invokeConfigs = resourcesOfType(t, 'AWS::Lambda::EventInvokeConfig').map(([, c]) => c.Properties);
    expect(invokeConfigs).toContainEqual(
      expect.objectContaining({ FunctionName: { Ref: 'MonitorLambdaFunction' }, MaximumRetryAttempts: 2 }),
    );
    const sweep = rules.find((r) => JSON.stringify(target(r).Arn).includes('OptimizeLambdaFunction'))!;
    expect(sweep.ScheduleExpression).toBe('rate(5 minutes)');
    expect(target(sweep).Arn).toEqual({ 'Fn::GetAtt': ['OptimizeLambdaFunction', 'Arn'] });
    // What functions/optimize/handler.ts recognizes as the sweep (shared/optimize/sweep.ts isSweepEvent).
    expect(JSON.parse(target(sweep).Input!)).toEqual({ maasOptimizeSweep: true });
  });

  it('attaches the onnxruntime layer exactly to the functions whose bundle loads onnxruntime-node', () => {
    const layer = t.Resources.OnnxruntimeLambdaLayer!.Properties;
    expect(layer.CompatibleArchitectures).toEqual(['x86_64']);
    expect(layer.CompatibleRuntimes).toContain('nodejs22.x');
    const layerZip = pkg.zip('onnxruntime');
    expect(layerZip.names()).toContain(
      'nodejs/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node',
    );
    expect(layerZip.names()).toContain('nodejs/node_modules/onnxruntime-common/dist/cjs/index.js');
    expect(layerZip.names().filter((n) => /napi-v6\/(?!linux\/x64\/)/.test(n))).toEqual([]);
    const withLayer: string[] = [];
    const needsOrt: string[] = [];
    for (const key of FUNCTIONS) {
      const fn = t.Resources[functionLogicalId(key)]!.Properties;
      if (
        ((fn.Layers as unknown[] | undefined) ?? []).some(
          (l: unknown) => JSON.stringify(l) === JSON.stringify({ Ref: 'OnnxruntimeLambdaLayer' }),
        )
      )
        withLayer.push(key);
      const zip = pkg.zip(key);
      const code = zip
        .names()
        .filter((n) => n.endsWith('.js'))
        .map((n) => zip.read(n).toString('utf8'))
        .join('\n');
      if (/require\(["']onnxruntime-node["']\)/.test(code)) needsOrt.push(key);
      // Never bundled: a native addon can only come from the layer.
      expect(zip.names().some((n) => n.includes('onnxruntime_binding.node'))).toBe(false);
    }
    expect(needsOrt).toContain('predict');
    expect(needsOrt).toContain('generate');
    expect(withLayer.sort()).toEqual(needsOrt.sort());
  });

  it("keeps the largest function plus its layers under Lambda's 250 MB unzipped", () => {
    const layerBytes = pkg.zip('onnxruntime').unzippedBytes();
    const sizes = FUNCTIONS.map((key) => {
      const fn = t.Resources[functionLogicalId(key)]!.Properties;
      const own = pkg.zip(key).unzippedBytes();
      return {
        key,
        own,
        total: own + (((fn.Layers as unknown[] | undefined) ?? []).length > 0 ? layerBytes : 0),
      };
    }).sort((a, b) => b.total - a.total);
    console.log(
      `unzipped: layer ${(layerBytes / 1e6).toFixed(1)} MB; ${sizes.map((s) => `${s.key} ${(s.own / 1e6).toFixed(2)} MB (+layers ${(s.total / 1e6).toFixed(1)} MB)`).join(', ')}`,
    );
    expect(sizes[0]!.total).toBeLessThan(LAMBDA_UNZIPPED_LIMIT);
    expect(layerBytes).toBeGreaterThan(10 * 1024 * 1024); // the binaries really are in it
  });

  it('gives every function its own role, limited to its log group and bucket prefixes', () => {
    const bucketArn = `arn:\${AWS::Partition}:s3:::${bucketNameSub()}`;
    const roles = new Set<string>();
    for (const key of FUNCTIONS) {
      const roleRef = t.Resources[functionLogicalId(key)]!.Properties.Role;
      const roleId = (roleRef as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
      roles.add(roleId);
      expect(t.Resources[roleId]!.Type).toBe('AWS::IAM::Role');
      for (const s of statementsOf(roleId)) {
        expect(s.Effect).toBe('Allow');
        const actions = list(s.Action);
        expect(
          actions.some((a) => a === '*' || a.endsWith(':*')),
          `${roleId} ${actions}`,
        ).toBe(false);
        const resources = resourceStrings(s.Resource);
        if (actions.every((a) => a.startsWith('s3:'))) {
          for (const r of resources)
            expect(r === bucketArn || r.startsWith(`${bucketArn}/`), `${roleId} ${r}`).toBe(true);
        } else if (actions.every((a) => a.startsWith('logs:'))) {
          expect(resources).toEqual([
            `arn:\${AWS::Partition}:logs:\${AWS::Region}:\${AWS::AccountId}:log-group:/aws/lambda/maas-dev-${key}:*`,
          ]);
        } else if (actions.includes('cloudwatch:PutMetricData')) {
          expect(resources).toEqual(['*']); // the action has no resource type; scoped by namespace instead
          expect(s.Condition).toEqual({ StringEquals: { 'cloudwatch:namespace': 'maas' } });
        } else if (actions.includes('events:PutEvents')) {
          // Registry events: the functions that change the registry publish to the stack's bus only.
          expect(['registerVersion', 'rollback', 'optimize', 'monitor']).toContain(key);
          expect(actions).toEqual(['events:PutEvents']);
          expect(resources).toEqual([
            `arn:\${AWS::Partition}:events:\${AWS::Region}:\${AWS::AccountId}:event-bus/maas-dev-events`,
          ]);
        } else if (actions.includes('sqs:SendMessage')) {
          // The S3 trigger's on-failure destination: only register-version sends, only to that queue.
          expect(key).toBe('registerVersion');
          expect(actions).toEqual(['sqs:SendMessage']);
          expect(s.Resource).toEqual({ 'Fn::GetAtt': ['IncomingFailuresQueue', 'Arn'] });
        } else if (actions.includes('lambda:InvokeFunction')) {
          // Each invokes only its own worker: optimize itself (jobs, the sweep's re-dispatches), monitor
          // itself (its batches), predict the asynchronous inference worker.
          const worker = { optimize: 'optimize', monitor: 'monitor', predict: 'predictAsync' }[key];
          expect(worker, key).toBeDefined();
          expect(resources).toEqual([
            `arn:\${AWS::Partition}:lambda:\${AWS::Region}:\${AWS::AccountId}:function:maas-dev-${worker}`,
          ]);
        } else {
          throw new Error(`unexpected statement in ${roleId}: ${JSON.stringify(s)}`);
        }
      }
    }
    expect(roles.size).toBe(FUNCTIONS.length);
    expect(resourcesOfType(t, 'AWS::IAM::Role')).toHaveLength(FUNCTIONS.length); // no shared framework role
  });

  it('lets predict read only what it serves (models/, blobs/; baselines and references/ for explanations) and write only its monitoring records', () => {
    const bucketArn = `arn:\${AWS::Partition}:s3:::${bucketNameSub()}`;
    const grants = statementsOf('PredictRole')
      .filter((s) => list(s.Action).every((a) => a.startsWith('s3:')))
      .flatMap((s) =>
        list(s.Action).flatMap((a) =>
          resourceStrings(s.Resource).map((r) => `${a} ${r.replace(bucketArn, 'bucket')}`),
        ),
      )
      .sort();
    expect(grants).toEqual(
      [
        's3:GetObject bucket/blobs/*',
        's3:GetObject bucket/models/*',
        's3:GetObject bucket/monitoring/baselines/*',
        's3:GetObject bucket/references/*',
        's3:ListBucket bucket',
        's3:PutObject bucket/monitoring/captures/*',
        's3:PutObject bucket/monitoring/predictions/*',
        // Asynchronous inference: signs input uploads, creates and reads request records, links responses.
        's3:GetObject bucket/async/inputs/*',
        's3:GetObject bucket/async/requests/*',
        's3:GetObject bucket/async/outputs/*',
        's3:PutObject bucket/async/inputs/*',
        's3:PutObject bucket/async/requests/*',
      ].sort(),
    );
  });

  it('serves generation from a streaming Function URL (IAM by default), with 15 minutes, the layer, predict sizing and read-only model access', () => {
    const fn = t.Resources[functionLogicalId('generate')]!.Properties;
    const predict = t.Resources[functionLogicalId('predict')]!.Properties;
    expect(fn.Handler).toBe('functions/generate/lambda.handler');
    expect(fn.Timeout).toBe(900);
    expect(fn.MemorySize).toBe(predict.MemorySize);
    expect(fn.EphemeralStorage).toEqual(predict.EphemeralStorage);
    expect(fn.Layers).toEqual([{ Ref: 'OnnxruntimeLambdaLayer' }]);
    const env = (fn.Environment as { Variables: Record<string, unknown> }).Variables;
    const predictEnv = (predict.Environment as { Variables: Record<string, unknown> }).Variables;
    // The same canary key as predict, so a request id splits the same way on both.
    expect(env.MAAS_CANARY_SECRET).toEqual(predictEnv.MAAS_CANARY_SECRET);
    const urls = resourcesOfType(t, 'AWS::Lambda::Url').map(([, u]) => u.Properties);
    expect(urls).toEqual([
      {
        AuthType: 'AWS_IAM',
        InvokeMode: 'RESPONSE_STREAM',
        TargetFunctionArn: { 'Fn::GetAtt': [functionLogicalId('generate'), 'Arn'] },
      },
    ]);
    // IAM: no public invoke permission.
    expect(
      resourcesOfType(t, 'AWS::Lambda::Permission').filter(([, p]) => p.Properties.Principal === '*'),
    ).toEqual([]);
    expect(t.Outputs?.GenerateLambdaFunctionUrl).toMatchObject({
      Description: 'Lambda Function URL',
      Value: { 'Fn::GetAtt': ['GenerateLambdaFunctionUrl', 'FunctionUrl'] },
    });
    const bucketArn = `arn:\${AWS::Partition}:s3:::${bucketNameSub()}`;
    const grants = statementsOf('GenerateRole')
      .filter((s) => list(s.Action).every((a) => a.startsWith('s3:')))
      .flatMap((s) =>
        list(s.Action).flatMap((a) =>
          resourceStrings(s.Resource).map((r) => `${a} ${r.replace(bucketArn, 'bucket')}`),
        ),
      )
      .sort();
    expect(grants).toEqual([
      's3:GetObject bucket/blobs/*',
      's3:GetObject bucket/models/*',
      's3:ListBucket bucket',
    ]);
  });

  it('runs asynchronous inference in predictAsync: the predict code with 15 minutes, one retry, and only what a run touches', () => {
    const fn = t.Resources[functionLogicalId('predictAsync')]!.Properties;
    expect(fn.Handler).toBe('functions/predict/handler.handler');
    expect(fn.Timeout).toBe(900);
    const env = (fn.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(env.MAAS_ASYNC_TIMEOUT_SECONDS).toBe('900');
    const predictEnv = (
      t.Resources[functionLogicalId('predict')]!.Properties.Environment as {
        Variables: Record<string, unknown>;
      }
    ).Variables;
    expect(predictEnv.MAAS_ASYNC_WORKER_FUNCTION).toBe('maas-dev-predictAsync');
    const config = resourcesOfType(t, 'AWS::Lambda::EventInvokeConfig')
      .map(([, c]) => c.Properties)
      .filter((c) => JSON.stringify(c.FunctionName).includes('PredictAsync'));
    expect(config).toEqual([
      expect.objectContaining({
        MaximumRetryAttempts: 1,
        MaximumEventAgeInSeconds: 21600,
        Qualifier: '$LATEST',
      }),
    ]);
    const bucketArn = `arn:\${AWS::Partition}:s3:::${bucketNameSub()}`;
    const grants = statementsOf('PredictAsyncRole')
      .filter((s) => list(s.Action).every((a) => a.startsWith('s3:')))
      .flatMap((s) =>
        list(s.Action).flatMap((a) =>
          resourceStrings(s.Resource).map((r) => `${a} ${r.replace(bucketArn, 'bucket')}`),
        ),
      )
      .sort();
    expect(grants).toEqual(
      [
        's3:GetObject bucket/blobs/*',
        's3:GetObject bucket/models/*',
        's3:GetObject bucket/async/inputs/*',
        's3:GetObject bucket/async/requests/*',
        's3:ListBucket bucket',
        's3:PutObject bucket/async/outputs/*',
        's3:PutObject bucket/async/requests/*',
        's3:PutObject bucket/monitoring/captures/*',
        's3:PutObject bucket/monitoring/predictions/*',
      ].sort(),
    );
  });

  it('creates the bucket encrypted, private, versioned, with lifecycle rules for incoming/ and rejected/', () => {
    const p = t.Resources.ModelBucket!.Properties;
    expect(
      (
        p.BucketEncryption as {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: string } }];
        }
      ).ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm,
    ).toMatch(/AES256|aws:kms/);
    expect(p.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(p.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    const rules = (
      p.LifecycleConfiguration as {
        Rules: {
          Prefix?: string;
          Status: string;
          ExpirationInDays?: number;
        }[];
      }
    ).Rules;
    for (const prefix of [
      'incoming/',
      'rejected/',
      'uploads/',
      'staging/',
      'async/',
      'monitoring/predictions/',
      'monitoring/captures/',
      'monitoring/feedback/',
      'monitoring/reports/',
      'idempotency/',
    ]) {
      const rule = rules.find((r) => r.Prefix === prefix);
      expect(rule?.Status, prefix).toBe('Enabled');
      expect(rule?.ExpirationInDays).toBeGreaterThan(0);
    }
    const policyDocument = t.Resources.ModelBucketPolicy!.Properties.PolicyDocument as {
      Statement: [unknown];
    };
    const policy = policyDocument.Statement[0];
    expect(policy).toMatchObject({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } });
  });

  it('sends incoming/ events that still fail after two retries to a queue, and alarms on it', () => {
    const [[, config]] = resourcesOfType(t, 'AWS::Lambda::EventInvokeConfig').filter(
      ([, r]) => (r.Properties.FunctionName as { Ref: string }).Ref === functionLogicalId('registerVersion'),
    ) as [[string, Template['Resources'][string]]];
    expect(config.Properties.MaximumRetryAttempts).toBe(2);
    expect(config.Properties.DestinationConfig).toEqual({
      OnFailure: { Destination: { 'Fn::GetAtt': ['IncomingFailuresQueue', 'Arn'] } },
    });
    expect(t.Resources.IncomingFailuresQueue!.Type).toBe('AWS::SQS::Queue');
    const alarm = t.Resources.IncomingFailuresAlarm!.Properties;
    expect(alarm).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      Dimensions: [{ Name: 'QueueName', Value: 'maas-dev-incoming-failures' }],
    });
    expect(t.Resources.IncomingFailuresQueue!.Properties.QueueName).toBe('maas-dev-incoming-failures');
  });

  it('alarms on predict server errors and p99 latency, and charts every metric predict emits', () => {
    const alarms = resourcesOfType(t, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const p99 = alarms.find((a) => a.ExtendedStatistic === 'p99');
    expect(p99).toMatchObject({
      Namespace: 'AWS/Lambda',
      MetricName: 'Duration',
      Dimensions: [{ Name: 'FunctionName', Value: 'maas-dev-predict' }],
    });
    const serverErrors = alarms.find((a) =>
      JSON.stringify(a.Metrics ?? []).includes(PREDICT_METRICS.serverErrors),
    );
    // Only predict's schema: the monitor's metrics in the same namespace must not trip it.
    expect((serverErrors?.Metrics as [{ Expression: string }] | undefined)?.[0].Expression).toBe(
      `SELECT SUM(${PREDICT_METRICS.serverErrors}) FROM SCHEMA(maas, model, service, version)`,
    );
    for (const metric of ['MaxInputPSI', 'ErrorRate']) {
      const monitorAlarm = alarms.find((a) =>
        JSON.stringify(a.Metrics ?? []).includes(`MAX(${metric}) FROM SCHEMA(maas, alias, model, role)`),
      );
      expect(monitorAlarm, metric).toBeDefined();
      expect(monitorAlarm!.Threshold).toBeGreaterThan(0);
    }
    const crashes = alarms.find((a) => a.MetricName === 'Errors');
    expect(crashes).toMatchObject({
      Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: 'maas-dev-predict' }],
    });

    const [, dashboard] = resourcesOfType(t, 'AWS::CloudWatch::Dashboard')[0]!;
    const dashboardBody = dashboard.Properties.DashboardBody as { 'Fn::Sub': string };
    const body = JSON.parse(dashboardBody['Fn::Sub'].replaceAll('${AWS::Region}', 'us-east-1')) as {
      widgets: unknown[];
    };
    const text = JSON.stringify(body);
    // predict's dimension schema (shared/inference/service.ts: model, version + Powertools' service).
    for (const metric of Object.values(PREDICT_METRICS))
      expect(text, metric).toContain(`SEARCH('{maas,model,service,version} MetricName=\\"${metric}\\"'`);
    // and the monitor's per-alias drift, error rate and accuracy
    for (const metric of ['MaxInputPSI', 'ErrorRate', 'Accuracy'])
      expect(text, metric).toContain(`SEARCH('{maas,alias,model,role} MetricName=\\"${metric}\\"'`);
  });

  it("keeps every function's logs for 30 days", () => {
    const groups = resourcesOfType(t, 'AWS::Logs::LogGroup').map(([, g]) => g.Properties);
    expect(groups.map((g) => g.LogGroupName).sort()).toEqual(
      FUNCTIONS.map((k) => `/aws/lambda/maas-dev-${k}`).sort(),
    );
    for (const g of groups) expect(g.RetentionInDays).toBe(30);
  });
});
