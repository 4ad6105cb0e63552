/**
 * What the benchmarks feed the predict handler: an API Gateway HTTP API (payload 2.0) infer
 * event and a Lambda context, as the handler sees them on AWS; and the table the benchmarks print.
 */
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';

/** An infer request event for model `name` (`base64`: as API Gateway delivers binary bodies). */
export function inferEvent(
  name: string,
  body: Buffer,
  headers: Record<string, string>,
  base64: boolean,
): APIGatewayProxyEventV2 {
  const rawPath = `/v2/models/${name}/infer`;
  return {
    version: '2.0',
    routeKey: 'POST /v2/models/{name}/infer',
    rawPath,
    rawQueryString: '',
    headers: { ...headers, 'content-length': String(body.length) },
    requestContext: {
      accountId: '123456789012',
      apiId: 'bench',
      domainName: 'bench.local',
      domainPrefix: 'bench',
      http: {
        method: 'POST',
        path: rawPath,
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: 'bench',
      },
      requestId: 'bench',
      routeKey: 'POST /v2/models/{name}/infer',
      stage: '$default',
      time: '',
      timeEpoch: 0,
    },
    pathParameters: { name },
    isBase64Encoded: base64,
    body: base64 ? body.toString('base64') : body.toString('utf8'),
  };
}

/** A Lambda context for in-process invocations. */
export const lambdaContext = {
  functionName: 'maas-predict',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:maas-predict',
  memoryLimitInMB: '2048',
  awsRequestId: 'bench',
  logGroupName: 'bench',
  logStreamName: 'bench',
  callbackWaitsForEmptyEventLoop: false,
  getRemainingTimeInMillis: () => 30_000,
  done: () => undefined,
  fail: () => undefined,
  succeed: () => undefined,
} as Context;

/**
 * Writes a program that cold-starts the predict handler as deployed: the esbuild bundle of
 * functions/predict/handler.ts (onnxruntime-node external, as the layer provides it), then one
 * infer request of a `[1, width]` FP32 input of 0.5s, printing `COLD-OK` once it answered 200.
 * Arguments: model name, input width. Used by the predict and large cold-start benches, and by
 * test/predict/cold-start.test.ts: packages named in `watch` stay outside the bundle (loaded from
 * node_modules as usual) and the program prints `LOADED <json>`, those of them (and
 * onnxruntime-node) the cold start required.
 *
 * @example
 * ```ts
 * const script = await writeColdPredictHandler(dir);
 * spawn(process.execPath, [script, 'large', '2048'], { env: { MAAS_STORE: url } });
 * ```
 */
export async function writeColdPredictHandler(
  dir: string,
  options: { watch?: readonly string[] } = {},
): Promise<string> {
  const watch = ['onnxruntime-node', ...(options.watch ?? [])];
  const { build } = await import('esbuild');
  const bundle = path.join(dir, 'predict-handler.cjs');
  await build({
    entryPoints: [path.join(__dirname, '../functions/predict/handler.ts')],
    outfile: bundle,
    bundle: true,
    minify: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: watch,
    logLevel: 'error',
  });
  // The bundle requires these by name from a temp folder (onnxruntime-node comes from the layer on
  // AWS): the program resolves them to this checkout's node_modules.
  const paths = JSON.stringify(Object.fromEntries(watch.map((p) => [p, require.resolve(p)])));
  const template = JSON.stringify(
    inferEvent('NAME', Buffer.from('{}'), { 'content-type': 'application/json' }, false),
  );
  const handler = path.join(dir, 'cold-handler.cjs');
  await writeFile(
    handler,
    `const Module = require('module');
const paths = ${paths};
const loaded = new Set();
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (!Object.hasOwn(paths, request)) return resolve.call(this, request, ...rest);
  loaded.add(request);
  return paths[request];
};
const { handler } = require(${JSON.stringify(bundle)});
const [name, size] = process.argv.slice(2);
const event = ${template};
event.rawPath = event.requestContext.http.path = '/v2/models/' + name + '/infer';
event.pathParameters = { name };
event.body = JSON.stringify({ inputs: [{ name: 'input', shape: [1, Number(size)], datatype: 'FP32', data: new Array(Number(size)).fill(0.5) }] });
handler(event, { awsRequestId: 'cold', functionName: 'maas-predict', getRemainingTimeInMillis: () => 30000 }).then((res) => {
  if (res.statusCode !== 200) { console.error('cold request failed', res.statusCode, res.body); process.exit(1); }
  process.stdout.write('LOADED ' + JSON.stringify([...loaded].sort()) + '\\n');
  process.stdout.write('COLD-OK\\n');
  process.exit(0);
});
`,
  );
  return handler;
}

/** Prints a markdown table (the form the issue notes take). */
export function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}
