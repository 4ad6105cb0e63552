/**
 * Asynchronous inference through the predict handlers on RGW: a 50 MB binary input uploaded with
 * the presigned POST the input route hands out, submitted with infer-async, handed to the
 * `predictAsync` function through Lambda's asynchronous Invoke API (captured on a loopback
 * endpoint that decodes the SDK's request, then delivered to the handler as Lambda would), and the
 * response fetched through the presigned link equals synchronous inference on the same bytes.
 * Then every bad submission (4xx, nothing written), failures recorded in the status (malformed
 * body), duplicate deliveries, and deadlines (nothing stays pending or running).
 */
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIrisClassifier } from '../../dev/demo/iris';
import { handler } from '../../functions/predict/handler';
import { getAsyncInference } from '../../functions/predict/runtime';
import {
  AsyncInferenceService,
  type AsyncInputTicket,
  type AsyncStatusView,
  type AsyncWorkerEvent,
} from '../../shared/inference';
import { listAll } from '../../shared/store';
import { startLoopbackLambda } from '../support/loopback-lambda';
import {
  apiEvent,
  binaryBody,
  bodyBuffer,
  bodyJson,
  invoke,
  lambdaContext,
  type PredictFixture,
  predictFixture,
} from './support';

const MB = 1024 * 1024;

/** The browser-style multipart POST a presigned S3 POST expects: policy fields first, file last. */
async function postToS3(ticket: AsyncInputTicket, bytes: Uint8Array): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(ticket.fields ?? {})) form.append(k, v);
  form.append('file', new Blob([bytes]), 'input.bin');
  return fetch(ticket.url ?? '', { method: 'POST', body: form });
}

async function newTicket(): Promise<AsyncInputTicket> {
  const res = await invoke(apiEvent('POST /v2/async/inputs'));
  expect(res.statusCode).toBe(201);
  return bodyJson(res) as unknown as AsyncInputTicket;
}

async function upload(bytes: Uint8Array): Promise<string> {
  const ticket = await newTicket();
  expect(ticket.method).toBe('POST');
  const res = await postToS3(ticket, bytes);
  expect(res.status, await res.clone().text()).toBeLessThan(300);
  return ticket.inputKey;
}

function submit(name: string, body: unknown, version?: string): Promise<APIGatewayProxyStructuredResultV2> {
  const headers = { 'content-type': 'application/json' };
  return invoke(
    version === undefined
      ? apiEvent('POST /v2/models/{name}/infer-async', { name }, { body: JSON.stringify(body), headers })
      : apiEvent(
          'POST /v2/models/{name}/versions/{version}/infer-async',
          { name, version },
          { body: JSON.stringify(body), headers },
        ),
  );
}

async function status(id: string): Promise<AsyncStatusView> {
  const res = await invoke(apiEvent('GET /v2/async/{id}', { id }));
  expect(res.statusCode).toBe(200);
  return bodyJson(res) as unknown as AsyncStatusView;
}

/** Iris flowers as an FP32 [n,4] binary-extension request with binary outputs. */
function irisBinary(rows: number): { body: Buffer; headerLength: number } {
  const data = new Float32Array(rows * 4);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 80) / 10;
  return binaryBody(
    {
      id: 'big-batch',
      inputs: [
        {
          name: 'input',
          shape: [rows, 4],
          datatype: 'FP32',
          parameters: { binary_data_size: data.byteLength },
        },
      ],
      parameters: { binary_data_output: true },
    },
    [data],
  );
}

describe('asynchronous inference through the predict handlers on RGW', () => {
  let fx: PredictFixture;
  let lambda: Awaited<ReturnType<typeof startLoopbackLambda>>;
  const saved = { ...process.env };

  beforeAll(async () => {
    lambda = await startLoopbackLambda();
    Object.assign(process.env, {
      MAAS_ASYNC_WORKER_FUNCTION: 'maas-test-predictAsync',
      ...lambda.env,
    });
    fx = await predictFixture();
    await fx.registry.registerVersion('iris', buildIrisClassifier().bytes, { alias: 'production' });
  });
  afterAll(async () => {
    process.env = saved;
    await fx?.cleanup();
    await lambda.close();
  });

  /** The invoke the last submission made, delivered to the handler as Lambda does. */
  async function deliverLast(remainingMs = 900_000): Promise<{ id: string; status: string }> {
    const sent = lambda.received.at(-1)!;
    expect(sent.url).toBe('/2015-03-31/functions/maas-test-predictAsync/invocations');
    expect(sent.headers['x-amz-invocation-type']).toBe('Event');
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => remainingMs };
    return (await handler(JSON.parse(sent.body) as AsyncWorkerEvent, context)) as {
      id: string;
      status: string;
    };
  }

  it('runs a 50 MB binary input end to end; the response behind the presigned link equals synchronous inference', async () => {
    const { body, headerLength } = irisBinary(Math.ceil((50 * MB) / 16));
    expect(body.length).toBeGreaterThan(50 * MB);
    const inputKey = await upload(body);
    const before = lambda.received.length;
    const res = await submit('iris', { inputKey, inferenceHeaderContentLength: headerLength });
    expect(res.statusCode, res.body).toBe(202);
    const accepted = bodyJson(res) as { id: string; status: string; status_url: string };
    expect(accepted).toEqual({
      id: expect.any(String),
      status: 'pending',
      status_url: `/v2/async/${accepted.id}`,
    });
    expect(res.headers?.location).toBe(accepted.status_url);
    expect(lambda.received.length).toBe(before + 1);
    expect(JSON.parse(lambda.received.at(-1)!.body)).toEqual({ maasAsyncInference: { id: accepted.id } });
    expect((await status(accepted.id)).status).toBe('pending');

    expect(await deliverLast()).toEqual({ id: accepted.id, status: 'succeeded' });
    const done = await status(accepted.id);
    expect(done).toMatchObject({
      status: 'succeeded',
      model: 'iris',
      version: 1,
      input: { key: inputKey, size: body.length },
    });
    expect(done.response).toBeUndefined();
    const link = done.output!;
    expect(link.url).toMatch(/^http.*X-Amz-Signature=/);
    const fetched = Buffer.from(await (await fetch(link.url)).arrayBuffer());

    const sync = await fx.service.infer('iris', undefined, body, {
      contentType: 'application/octet-stream',
      headerLength: String(headerLength),
    });
    expect(link.inferenceHeaderContentLength).toBe(sync.headerLength);
    expect(link.size).toBe(sync.body.length);
    expect(fetched.equals(sync.body as Buffer)).toBe(true);

    // A second delivery of the same event (Lambda retry) does nothing.
    expect(await deliverLast()).toEqual({
      id: accepted.id,
      status: 'skipped (unknown, already claimed or finished)',
    });
    expect(await status(accepted.id)).toMatchObject({ status: 'succeeded', finishedAt: done.finishedAt });
  }, 120_000);

  it('returns a small JSON response inline, equal to the synchronous route, and resolves versions like it', async () => {
    const request = {
      id: 'r1',
      inputs: [
        { name: 'input', shape: [2, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2, 6.3, 3.3, 6, 2.5] },
      ],
    };
    const inputKey = await upload(Buffer.from(JSON.stringify(request)));
    const res = await submit('iris', { inputKey }, '1');
    expect(res.statusCode, res.body).toBe(202);
    await deliverLast();
    const view = await status((bodyJson(res) as { id: string }).id);
    const sync = await invoke(
      apiEvent(
        'POST /v2/models/{name}/versions/{version}/infer',
        { name: 'iris', version: '1' },
        {
          body: JSON.stringify(request),
          headers: { 'content-type': 'application/json' },
        },
      ),
    );
    expect(view.status).toBe('succeeded');
    expect(view.response).toEqual(JSON.parse(sync.body ?? ''));
  });

  it('refuses bad submissions with a clear 4xx and writes nothing', async () => {
    const inputKey = await upload(Buffer.from('{"inputs":[]}'));
    const snapshot = async (): Promise<string[]> =>
      (await listAll(fx.store, {})).objects.map((o) => `${o.key} ${o.etag}`).sort();
    const before = await snapshot();
    const invokes = lambda.received.length;
    const cases: [unknown, string | undefined, number, RegExp][] = [
      [{}, undefined, 400, /inputKey must be async\/inputs\//],
      [{ inputKey: 'models/iris/head.json' }, undefined, 400, /inputKey must be async\/inputs\//],
      [{ inputKey: 'async/inputs/../models/x' }, undefined, 400, /inputKey/],
      [
        { inputKey: 'async/inputs/0d9c8a54-1a8b-4a7e-9a55-8d0e3e3f0c11' },
        undefined,
        404,
        /nothing was uploaded/,
      ],
      [{ inputKey, inferenceHeaderContentLength: -1 }, undefined, 400, /inferenceHeaderContentLength/],
      [{ inputKey }, 'nope', 404, /nope/],
    ];
    for (const [body, name, code, message] of cases) {
      const res = await submit(name ?? 'iris', body);
      expect(res.statusCode, `${JSON.stringify(body)} ${res.body}`).toBe(code);
      expect(String(bodyJson(res).error)).toMatch(message);
    }
    const unknownVersion = await submit('iris', { inputKey }, '9');
    expect(unknownVersion.statusCode).toBe(404);

    // Too big: the limit is a setting (read when the core is built).
    process.env.MAAS_ASYNC_MAX_INPUT_BYTES = '8';
    await fx.reinstall();
    try {
      const res = await submit('iris', { inputKey });
      expect(res.statusCode).toBe(413);
      expect(bodyJson(res)).toMatchObject({ code: 'too_large', details: { limit: 8, size: 13 } });
    } finally {
      delete process.env.MAAS_ASYNC_MAX_INPUT_BYTES;
      await fx.reinstall();
    }
    expect(lambda.received.length).toBe(invokes);
    expect(await snapshot()).toEqual(before);
  });

  it('records a malformed body as failed with the error a synchronous request would get; no response is written', async () => {
    const inputKey = await upload(Buffer.from('{"inputs": [{"name": "input", "shape": [1, 4]'));
    const res = await submit('iris', { inputKey });
    expect(res.statusCode).toBe(202);
    const { id } = bodyJson(res) as { id: string };
    expect(await deliverLast()).toEqual({ id, status: 'failed' });
    const view = await status(id);
    expect(view).toMatchObject({ status: 'failed', httpStatus: 400, error: { code: 'invalid_argument' } });
    expect(view.error?.error).toMatch(/JSON/);
    expect(view.output).toBeUndefined();
    expect((await listAll(fx.store, { prefix: 'async/outputs/' })).objects.map((o) => o.key)).not.toContain(
      `async/outputs/${id}.json`,
    );
    const download = await invoke(apiEvent('GET /v2/async/{id}/output', { id }));
    expect(download.statusCode).toBe(404);
  });

  it('fails a run that exceeds its deadline (deadline_exceeded), and never leaves it running', async () => {
    const { body, headerLength } = irisBinary(200_000);
    const inputKey = await upload(body);
    const res = await submit('iris', { inputKey, inferenceHeaderContentLength: headerLength });
    const { id } = bodyJson(res) as { id: string };
    // 1 ms left after the safety margin: the deadline passes while the input is still being read.
    expect(await deliverLast(3001)).toEqual({ id, status: 'failed' });
    const view = await status(id);
    expect(view).toMatchObject({ status: 'failed', httpStatus: 504, error: { code: 'deadline_exceeded' } });
    expect(view.error?.error).toMatch(/did not finish before its deadline/);
    await new Promise((r) => setTimeout(r, 1500)); // the abandoned run finishes in the background
    expect((await listAll(fx.store, { prefix: `async/outputs/${id}` })).objects).toEqual([]);
    expect((await status(id)).status).toBe('failed');
  });

  it('fails a request that never started once its deadline passed, when its status is read', async () => {
    let clock = Date.now();
    const never = new AsyncInferenceService({
      store: fx.store,
      inference: fx.service,
      settings: { queueMs: 60_000, timeoutMs: 1000 },
      dispatch: async () => undefined, // a lost event: no worker ever runs it
      now: () => clock,
    });
    const inputKey = await upload(Buffer.from('{"inputs":[]}'));
    const record = await never.submit('iris', undefined, { inputKey });
    expect((await never.status(record.id)).status).toBe('pending');
    clock += 61_001;
    expect(await never.status(record.id)).toMatchObject({
      status: 'failed',
      httpStatus: 504,
      error: { code: 'deadline_exceeded', error: expect.stringMatching(/not started before its deadline/) },
    });
    // Stored, not only shown: the worker arriving late finds it failed and does nothing.
    expect(await never.run(record.id)).toBeUndefined();
    expect((await status(record.id)).status).toBe('failed');
  });

  it('runs in-process when no worker function is configured (local, tests)', async () => {
    delete process.env.MAAS_ASYNC_WORKER_FUNCTION;
    await fx.reinstall();
    try {
      const request = {
        inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }],
      };
      const inputKey = await upload(Buffer.from(JSON.stringify(request)));
      const invokes = lambda.received.length;
      const res = await submit('iris', { inputKey });
      expect(res.statusCode).toBe(202);
      await getAsyncInference().idle();
      expect(lambda.received.length).toBe(invokes);
      const view = await status((bodyJson(res) as { id: string }).id);
      expect(view.status).toBe('succeeded');
      expect((view.response as { outputs: unknown[] }).outputs).toHaveLength(2);
      expect(
        bodyBuffer(await invoke(apiEvent('GET /v2/async/{id}/output', { id: view.id }))).length,
      ).toBeGreaterThan(0);
    } finally {
      process.env.MAAS_ASYNC_WORKER_FUNCTION = 'maas-test-predictAsync';
      await fx.reinstall();
    }
  });
});
