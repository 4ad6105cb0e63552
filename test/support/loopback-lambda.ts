import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the AWS SDK sent to the Lambda Invoke API. */
export interface Invocation {
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * A loopback stand-in for Lambda's Invoke API (control plane: nothing real can run here). It
 * records what the SDK sends (`POST /2015-03-31/functions/{name}/invocations`, SigV4 headers, the
 * payload) and answers `status`: 202 as for a queued Event invocation, anything else with a
 * Lambda-style error body. Point the SDK at it with `env` (AWS_ENDPOINT_URL_LAMBDA + dummy keys).
 *
 * @example
 * const lambda = await startLoopbackLambda();
 * Object.assign(process.env, lambda.env);
 * lambda.status = 403; // the next invocations are refused
 */
export async function startLoopbackLambda(): Promise<{
  received: Invocation[];
  status: number;
  env: Record<string, string>;
  close(): Promise<void>;
}> {
  const state = {
    received: [] as Invocation[],
    status: 202,
    env: {} as Record<string, string>,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      state.received.push({
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      res.writeHead(state.status, { 'content-type': 'application/json' });
      res.end(state.status === 202 ? '' : JSON.stringify({ Type: 'User', message: 'denied' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.env = {
    AWS_ENDPOINT_URL_LAMBDA: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'us-east-1',
  };
  return state;
}
