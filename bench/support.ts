/**
 * What the benchmarks feed the predict handler: an API Gateway HTTP API (payload 2.0) infer
 * event and a Lambda context, as the handler sees them on AWS.
 */
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
