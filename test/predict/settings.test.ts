/**
 * The settings error policy through the real predict handler, with a model in RGW: an invalid
 * `MAAS_*` value is logged once at start-up (Powertools Logger, naming the setting and the
 * value) and every request is answered 500 `misconfigured` naming the setting but not its
 * value — never a client 400. Fixing the setting and starting afresh serves again.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { getRegistry, resetRuntime } from '../../functions/lib/runtime';
import { setInferenceService } from '../../functions/predict/runtime';
import { createTestBucket, type TestBucket } from '../support/s3';
import { apiEvent, bodyJson, invoke } from './support';

let bucket: TestBucket;
const saved = { ...process.env };
const BAD = 'sixty'; // a typo an operator might make

const inferEvent = () =>
  apiEvent(
    'POST /v2/models/{name}/infer',
    { name: 'cfg' },
    {
      body: JSON.stringify({
        inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [0.1, 0.2, 0.3, 0.4] }],
      }),
      headers: { 'content-type': 'application/json' },
    },
  );

/** Lines Powertools Logger writes (stdout and stderr) while `fn` runs. */
async function logLines(fn: () => Promise<void>): Promise<Record<string, unknown>[]> {
  const lines: string[] = [];
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const capture = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = capture;
  process.stderr.write = capture;
  try {
    await fn();
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
  return lines
    .flatMap((l) => l.split('\n'))
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

beforeAll(async () => {
  bucket = await createTestBucket('predict-settings');
  process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
  process.env.MAAS_METRICS = 'off';
  resetRuntime();
  const model = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 2, seed: 3 });
  await getRegistry().registerVersion('cfg', model.bytes);
});
afterEach(async () => {
  process.env.MAAS_CAPTURE_FLUSH_SECONDS = saved.MAAS_CAPTURE_FLUSH_SECONDS;
  if (saved.MAAS_CAPTURE_FLUSH_SECONDS === undefined) delete process.env.MAAS_CAPTURE_FLUSH_SECONDS;
  resetRuntime();
  await setInferenceService();
});
afterAll(async () => {
  for (const k of ['MAAS_STORE', 'MAAS_METRICS'])
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  resetRuntime();
  await bucket?.cleanup();
});

describe('a misconfigured predict function', () => {
  it('logs the bad MAAS_CAPTURE_FLUSH_SECONDS once at start-up and answers every request 500 misconfigured', async () => {
    process.env.MAAS_CAPTURE_FLUSH_SECONDS = BAD;
    await setInferenceService();
    const responses: Awaited<ReturnType<typeof invoke>>[] = [];
    const logs = await logLines(async () => {
      responses.push(await invoke(inferEvent()));
      responses.push(await invoke(inferEvent()));
      responses.push(await invoke(apiEvent('GET /v2/health/ready')));
      responses.push(await invoke(apiEvent('GET /v2/models/{name}', { name: 'cfg' })));
    });
    for (const res of responses) {
      expect(res.statusCode).toBe(500);
      const body = bodyJson(res);
      expect(body).toMatchObject({ code: 'misconfigured' });
      expect(String(body.error)).toMatch(/misconfigured/);
      expect(String(body.error)).toContain('MAAS_CAPTURE_FLUSH_SECONDS');
      expect(JSON.stringify(body)).not.toContain(BAD);
    }
    const startup = logs.filter((l) => l.message === 'misconfigured: refusing to serve');
    expect(startup).toHaveLength(1);
    expect(startup[0]).toMatchObject({
      level: 'ERROR',
      setting: 'MAAS_CAPTURE_FLUSH_SECONDS',
      value: BAD,
      service: 'maas-predict',
    });
    // Each refusal names the setting, without the value or a stack trace.
    const refusals = logs.filter((l) => l.message === 'request refused: misconfigured');
    expect(refusals).toHaveLength(responses.length);
    for (const line of refusals) {
      expect(line).toMatchObject({ level: 'WARN', status: 500, settings: ['MAAS_CAPTURE_FLUSH_SECONDS'] });
      expect(JSON.stringify(line)).not.toContain(BAD);
    }
    expect(logs.some((l) => l.message === 'request rejected')).toBe(false);
  });

  it('serves again once the setting is fixed and the container starts afresh', async () => {
    process.env.MAAS_CAPTURE_FLUSH_SECONDS = '30';
    await setInferenceService();
    const res = await invoke(inferEvent());
    expect(res.statusCode).toBe(200);
    expect((bodyJson(res).outputs as { shape: number[] }[])[0]!.shape).toEqual([1, 2]);
  });

  it('an invalid MAAS_MAX_MODEL_BYTES is refused too, not silently ignored', async () => {
    process.env.MAAS_MAX_MODEL_BYTES = '10MB';
    try {
      resetRuntime();
      await setInferenceService();
      const res = await invoke(inferEvent());
      expect(res.statusCode).toBe(500);
      expect(bodyJson(res)).toMatchObject({
        code: 'misconfigured',
        details: { settings: ['MAAS_MAX_MODEL_BYTES'] },
      });
    } finally {
      delete process.env.MAAS_MAX_MODEL_BYTES;
    }
  });
});
