/**
 * Asynchronous inference under `npm start` (serverless-offline, file store, runs in-process): a
 * 50 MB JSON input — five times what the local API Gateway accepts in a request body — written
 * where the input ticket says, submitted with infer-async, polled to `succeeded`, and its binary
 * response downloaded from the local output route; it equals synchronous inference of the same
 * rows (the input repeats one block of flowers, which the synchronous route answers).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AsyncInputTicket, AsyncStatusView } from '../../shared/inference';
import { childEnv, freePort, LocalServer, serviceCopy } from './local-server';

const MB = 1024 * 1024;
let dir: string;
let server: LocalServer;
let base: string;

beforeAll(async () => {
  dir = serviceCopy();
  const httpPort = await freePort();
  base = `http://127.0.0.1:${httpPort}`;
  server = LocalServer.start(
    dir,
    childEnv({ MAAS_PORT: String(httpPort), MAAS_LAMBDA_PORT: String(await freePort()) }),
  );
  await server.waitUntilReady(`${base}/v2/health/ready`, 170_000);
}, 180_000);

afterAll(async () => {
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** One block of distinct flowers (one decimal, as measured). */
function block(rows: number): number[] {
  const values: number[] = [];
  for (let r = 0; r < rows; r++)
    values.push(4 + (r % 40) / 10, 2 + ((r * 3) % 25) / 10, 1 + ((r * 7) % 60) / 10, ((r * 11) % 25) / 10);
  return values;
}

async function post(route: string, body: unknown): Promise<Response> {
  return fetch(`${base}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('npm start: asynchronous inference', () => {
  it('infers a 50 MB JSON input; the response equals synchronous inference of the same rows', async () => {
    const BLOCK = 1000;
    const one = block(BLOCK);
    const blockText = one.join(',');
    const repeats = Math.ceil((50 * MB) / (blockText.length + 1));
    const rows = BLOCK * repeats;
    const outputs = [{ name: 'probabilities', parameters: { binary_data: true } }];
    const text = `{"id":"big","inputs":[{"name":"input","shape":[${rows},4],"datatype":"FP32","data":[${Array(repeats).fill(blockText).join(',')}]}],"outputs":${JSON.stringify(outputs)}}`;
    expect(text.length).toBeGreaterThan(50 * MB);

    // Too big for the synchronous route (the local API Gateway refuses bodies over 10 MB).
    expect((await post('/v2/models/iris/infer', JSON.parse(text))).status).toBe(413);

    const ticketRes = await post('/v2/async/inputs', {});
    expect(ticketRes.status).toBe(201);
    const ticket = (await ticketRes.json()) as AsyncInputTicket;
    expect(ticket).toMatchObject({ method: 'FILE', maxBytes: 256 * MB });
    expect(ticket.path).toBe(path.join(dir, '.maas', ticket.inputKey));
    fs.mkdirSync(path.dirname(ticket.path!), { recursive: true });
    fs.writeFileSync(ticket.path!, text);

    const submitted = await post('/v2/models/iris/infer-async', { inputKey: ticket.inputKey });
    expect(submitted.status, await submitted.clone().text()).toBe(202);
    const { status_url } = (await submitted.json()) as { status_url: string };
    let view: AsyncStatusView | undefined;
    const started = Date.now();
    while (Date.now() - started < 120_000) {
      view = (await (await fetch(`${base}${status_url}`)).json()) as AsyncStatusView;
      if (view.status === 'succeeded' || view.status === 'failed') break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(view?.status, JSON.stringify(view?.error)).toBe('succeeded');
    expect(view?.input.size).toBe(text.length);
    const link = view!.output!;
    const download = await fetch(`${base}${link.url}`);
    expect(download.status).toBe(200);
    expect(download.headers.get('inference-header-content-length')).toBe(
      String(link.inferenceHeaderContentLength),
    );
    const bytes = Buffer.from(await download.arrayBuffer());
    const headerLength = link.inferenceHeaderContentLength!;
    const header = JSON.parse(bytes.subarray(0, headerLength).toString('utf8')) as {
      id: string;
      outputs: { name: string; shape: number[] }[];
    };
    expect(header.id).toBe('big');
    expect(header.outputs[0]).toMatchObject({ name: 'probabilities', shape: [rows, 3] });
    const tail = Buffer.from(bytes.subarray(headerLength)); // own, aligned buffer
    const got = new Float32Array(tail.buffer, tail.byteOffset, tail.length / 4);

    const sync = (await (
      await post('/v2/models/iris/infer', {
        inputs: [{ name: 'input', shape: [BLOCK, 4], datatype: 'FP32', data: one }],
        outputs: [{ name: 'probabilities' }],
      })
    ).json()) as { outputs: { data: number[] }[] };
    const expected = sync.outputs[0]!.data;
    let worst = 0;
    for (let i = 0; i < got.length; i++)
      worst = Math.max(worst, Math.abs(got[i]! - expected[i % expected.length]!));
    // The same float32 computation row by row; batch size must not change a result beyond rounding.
    expect(worst).toBeLessThan(1e-6);
  }, 240_000);

  it('refuses a submission naming a missing input (404), and writes no request record', async () => {
    const res = await post('/v2/models/iris/infer-async', { inputKey: 'async/inputs/not-there.json' });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: string }).error).toMatch(/nothing was uploaded/);
    expect(
      fs.existsSync(path.join(dir, '.maas', 'async', 'requests'))
        ? fs.readdirSync(path.join(dir, '.maas', 'async', 'requests'))
        : [],
    ).toHaveLength(1); // the 50 MB request's record only
  });
});
