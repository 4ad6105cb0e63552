/**
 * End-to-end through the exported predict handler, with models registered in RGW: OIP routes,
 * numeric correctness against plain-JS references, every datatype in JSON and binary, and every
 * bad input answered with its 4xx while the function keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildIdentityModel,
  buildMlp,
  mlpReference,
  mulberry32,
  randomFloat32,
  toFloat16Bits,
} from '../../dev/onnx-builder';
import {
  float16BitsToFloat32,
  OIP_DATATYPES,
  type OipDatatype,
  typedArrayConstructorOf,
} from '../../shared/onnx/datatypes';
import { countingStore } from '../support/counting-store';
import { tinyModel } from '../support/models';
import {
  apiEvent,
  binaryBody,
  bodyBuffer,
  bodyJson,
  inferEvent,
  invoke,
  type PredictFixture,
  predictFixture,
} from './support';

let fx: PredictFixture;
const mlp = buildMlp({ inputSize: 16, hiddenSizes: [32], outputSize: 4, seed: 7, softmax: false });

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] ?? NaN;
    const e = expected[i] ?? NaN;
    if (Math.abs(a - e) > 1e-4 * Math.abs(e) + 1e-5) throw new Error(`element ${i}: got ${a}, expected ${e}`);
  }
}

/** JSON-friendly sample values per datatype (64-bit extremes as decimal strings). */
const JSON_SAMPLES: Record<OipDatatype, unknown[]> = {
  BOOL: [true, false, true, true, false, false],
  UINT8: [0, 1, 127, 128, 254, 255],
  UINT16: [0, 1, 0x7fff, 0x8000, 0xfffe, 0xffff],
  UINT32: [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff],
  UINT64: [0, 1, '9007199254740993', '9223372036854775808', '18446744073709551614', '18446744073709551615'],
  INT8: [-128, -1, 0, 1, 126, 127],
  INT16: [-32768, -1, 0, 1, 32766, 32767],
  INT32: [-(2 ** 31), -1, 0, 1, 2 ** 31 - 2, 2 ** 31 - 1],
  INT64: ['-9223372036854775808', '-9007199254740993', 0, 1, '9007199254740993', '9223372036854775807'],
  FP16: [0, -2, 1.5, 65504, 0.0999755859375, -0.5],
  // Exactly representable in float32, so the echoed JSON text is the same number.
  FP32: [0, -2, 1.100000023841858, -3.3999999521443642e38, 0.25, 7],
  FP64: [0, -0.5, 0.1, Number.MAX_VALUE, Number.MIN_VALUE, -1e300],
  BYTES: ['', 'a', 'hello world', 'naïve ☃ 😀', 'tab\there\nnewline', 'x'.repeat(1000)],
};

/** What the response's JSON data must be: numbers for 64-bit ints printed exactly. */
function expectedJson(datatype: OipDatatype): string {
  return `[${JSON_SAMPLES[datatype].map((v) => (typeof v === 'string' && datatype !== 'BYTES' ? v : JSON.stringify(v))).join(',')}]`;
}

beforeAll(async () => {
  fx = await predictFixture();
  await fx.registry.registerVersion('mlp', mlp.bytes, { alias: 'production', actor: 'test' });
  for (const d of OIP_DATATYPES)
    await fx.registry.registerVersion(`id-${d.toLowerCase()}`, buildIdentityModel(d, ['batch', 3]).bytes);
  // Fixed dims and two inputs, for validation messages.
  await fx.registry.registerVersion('fixed', buildIdentityModel('FP32', [2, 3]).bytes);
});
afterAll(async () => fx?.cleanup());

describe('server and model metadata', () => {
  it('answers health, server metadata and model metadata', async () => {
    expect(bodyJson(await invoke(apiEvent('GET /v2/health/live')))).toEqual({ live: true });
    expect(bodyJson(await invoke(apiEvent('GET /v2/health/ready')))).toEqual({ ready: true });
    expect(bodyJson(await invoke(apiEvent('GET /v2')))).toEqual({
      name: 'maas',
      version: expect.any(String),
      extensions: ['binary_tensor_data', 'generate'],
    });
    const meta = await invoke(apiEvent('GET /v2/models/{name}', { name: 'mlp' }));
    expect(meta.statusCode).toBe(200);
    expect(bodyJson(meta)).toEqual({
      name: 'mlp',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 16] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 4] }],
    });
    const byAlias = bodyJson(
      await invoke(
        apiEvent('GET /v2/models/{name}/versions/{version}', { name: 'mlp', version: 'production' }),
      ),
    );
    expect(byAlias.versions).toEqual(['1']);
    const ready = await invoke(
      apiEvent('GET /v2/models/{name}/versions/{version}/ready', { name: 'mlp', version: '1' }),
    );
    expect(bodyJson(ready)).toEqual({ name: 'mlp', version: '1', ready: true });
    expect((await invoke(apiEvent('GET /v2/models/{name}/ready', { name: 'nope' }))).statusCode).toBe(404);
    expect((await invoke(apiEvent('GET /v2/models/{name}', { name: 'nope' }))).statusCode).toBe(404);
  });

  it('model metadata lists versions without reading every manifest, and caches them for the TTL', async () => {
    for (let seed = 1; seed <= 12; seed++)
      await fx.registry.registerVersion('many', tinyModel(seed), seed === 12 ? { alias: 'production' } : {});
    await fx.registry.setStatus('many', 3, 'rejected', { actor: 'test' });
    await fx.registry.setStatus('many', 5, 'archived', { actor: 'test' });
    const expected = ['1', '2', '4', '5', '6', '7', '8', '9', '10', '11', '12']; // rejected ones are not listed
    const counter = countingStore(fx.store);
    await fx.reinstall({ aliasTtlMs: 60_000 }, counter.store);
    try {
      const meta = await invoke(apiEvent('GET /v2/models/{name}', { name: 'many' }));
      expect(meta.statusCode).toBe(200);
      expect(bodyJson(meta).versions).toEqual(expected);
      // The only manifest read is the resolved version's (its signature is the answer).
      expect(counter.calls.filter((c) => c.startsWith('get models/many/versions/'))).toEqual([
        'get models/many/versions/000000012.json',
      ]);
      counter.reset();
      expect(bodyJson(await invoke(apiEvent('GET /v2/models/{name}', { name: 'many' }))).versions).toEqual(
        expected,
      );
      expect(counter.calls).toEqual([]);
    } finally {
      await fx.reinstall();
    }
  });
});

describe('inference', () => {
  it('MLP outputs equal the plain-JS reference (flat and nested data, several batch sizes)', async () => {
    for (const batch of [1, 3, 8]) {
      const x = randomFloat32(mulberry32(batch), batch * 16);
      const nested = Array.from({ length: batch }, (_, r) => Array.from(x.subarray(r * 16, r * 16 + 16)));
      for (const data of [Array.from(x), nested]) {
        const res = await invoke(
          inferEvent('mlp', {
            id: `b${batch}`,
            inputs: [{ name: 'input', shape: [batch, 16], datatype: 'FP32', data }],
          }),
        );
        expect(res.statusCode).toBe(200);
        expect(res.headers?.['x-maas-model-version']).toBe('1');
        const body = bodyJson(res) as {
          model_name: string;
          model_version: string;
          id: string;
          outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
        };
        expect(body.model_name).toBe('mlp');
        expect(body.model_version).toBe('1');
        expect(body.id).toBe(`b${batch}`);
        expect(body.outputs).toHaveLength(1);
        expect(body.outputs[0]).toMatchObject({ name: 'output', datatype: 'FP32', shape: [batch, 4] });
        expectClose(body.outputs[0]!.data, mlpReference(mlp.weights, x, batch));
      }
    }
  });

  it('serves explicit versions and aliases', async () => {
    const x = Array.from(randomFloat32(mulberry32(3), 16));
    for (const version of ['1', 'production', 'latest']) {
      const res = await invoke(
        inferEvent(
          'mlp',
          { inputs: [{ name: 'input', shape: [1, 16], datatype: 'FP32', data: x }] },
          version,
        ),
      );
      expect(res.statusCode).toBe(200);
      expect(bodyJson(res).model_version).toBe('1');
    }
  });

  for (const datatype of OIP_DATATYPES) {
    it(`${datatype} round-trips in JSON`, async () => {
      const name = `id-${datatype.toLowerCase()}`;
      const res = await invoke(
        inferEvent(name, {
          inputs: [{ name: 'input', shape: [2, 3], datatype, data: JSON_SAMPLES[datatype] }],
        }),
      );
      expect(res.statusCode, res.body).toBe(200);
      const text = bodyBuffer(res).toString('utf8');
      const body = JSON.parse(text) as { outputs: { datatype: string; shape: number[] }[] };
      expect(body.outputs[0]).toMatchObject({ name: 'output', datatype, shape: [2, 3] });
      // Compare the raw JSON text so 64-bit integers are checked digit for digit.
      expect(text).toContain(`"data":${expectedJson(datatype)}`);
    });

    it(`${datatype} round-trips with the binary extension (base64 event, binary outputs)`, async () => {
      const name = `id-${datatype.toLowerCase()}`;
      let chunk: Uint8Array;
      if (datatype === 'BYTES') {
        const parts = (JSON_SAMPLES.BYTES as string[]).map((s) => Buffer.from(s));
        chunk = Buffer.concat(parts.flatMap((p) => [Buffer.from(Uint32Array.of(p.length).buffer), p]));
      } else {
        const Ctor = typedArrayConstructorOf(datatype);
        const values = JSON_SAMPLES[datatype].map((v) =>
          datatype === 'INT64' || datatype === 'UINT64'
            ? BigInt(v as string | number)
            : datatype === 'BOOL'
              ? v
                ? 1
                : 0
              : (v as number),
        );
        const arr =
          datatype === 'FP16'
            ? toFloat16Bits(values as number[])
            : (Ctor as unknown as { from(v: unknown[]): Uint8Array }).from(values);
        chunk = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
      }
      const { body, headerLength } = binaryBody(
        {
          id: 'bin',
          inputs: [
            { name: 'input', shape: [2, 3], datatype, parameters: { binary_data_size: chunk.byteLength } },
          ],
          outputs: [{ name: 'output', parameters: { binary_data: true } }],
        },
        [chunk],
      );
      const res = await invoke(
        apiEvent(
          'POST /v2/models/{name}/infer',
          { name },
          {
            body,
            base64: true,
            headers: {
              'content-type': 'application/octet-stream',
              'inference-header-content-length': String(headerLength),
            },
          },
        ),
      );
      expect(res.statusCode, res.body).toBe(200);
      expect(res.isBase64Encoded).toBe(true);
      const out = bodyBuffer(res);
      const n = Number(res.headers?.['inference-header-content-length']);
      const head = JSON.parse(out.subarray(0, n).toString('utf8')) as {
        id: string;
        outputs: { parameters: { binary_data_size: number } }[];
      };
      expect(head.id).toBe('bin');
      expect(head.outputs[0]).toMatchObject({
        name: 'output',
        datatype,
        shape: [2, 3],
        parameters: { binary_data_size: chunk.byteLength },
      });
      expect(Buffer.from(out.subarray(n)).equals(Buffer.from(chunk))).toBe(true);
    });
  }

  it('FP16 JSON values are converted to half precision and back', async () => {
    const res = await invoke(
      inferEvent('id-fp16', {
        inputs: [{ name: 'input', shape: [1, 3], datatype: 'FP16', data: [0.1, Math.PI, -70000] }],
      }),
    );
    const text = bodyBuffer(res).toString('utf8');
    const expected = [0.1, Math.PI].map((v) => float16BitsToFloat32(toFloat16Bits([v])[0]!));
    // -70000 overflows to -Inf, written as the bare literal (docs/api/predict.md).
    expect(text).toContain(`"data":[${expected.join(',')},-Infinity]`);
  });

  it('binary MLP input with JSON output, and request-level binary_data_output', async () => {
    const x = randomFloat32(mulberry32(9), 2 * 16);
    const expected = mlpReference(mlp.weights, x, 2);
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          { name: 'input', shape: [2, 16], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } },
        ],
      },
      [x],
    );
    const headers = {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(headerLength),
    };
    const jsonOut = await invoke(
      apiEvent('POST /v2/models/{name}/infer', { name: 'mlp' }, { body, headers }),
    );
    expect(jsonOut.headers?.['content-type']).toBe('application/json');
    expectClose((bodyJson(jsonOut).outputs as { data: number[] }[])[0]!.data, expected);

    const { body: b2, headerLength: h2 } = binaryBody(
      {
        parameters: { binary_data_output: true },
        inputs: [
          { name: 'input', shape: [2, 16], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } },
        ],
      },
      [x],
    );
    const binOut = await invoke(
      apiEvent(
        'POST /v2/models/{name}/infer',
        { name: 'mlp' },
        { body: b2, headers: { ...headers, 'inference-header-content-length': String(h2) } },
      ),
    );
    const buf = bodyBuffer(binOut);
    const n = Number(binOut.headers?.['inference-header-content-length']);
    const tail = buf.subarray(n);
    expectClose(
      new Float32Array(tail.buffer.slice(tail.byteOffset, tail.byteOffset + tail.byteLength)),
      expected,
    );
  });
});

describe('bodies and limits', () => {
  it('accepts a base64-encoded JSON body', async () => {
    const x = randomFloat32(mulberry32(4), 16);
    const b64 = await invoke(
      apiEvent(
        'POST /v2/models/{name}/infer',
        { name: 'mlp' },
        {
          body: Buffer.from(
            JSON.stringify({
              inputs: [{ name: 'input', shape: [1, 16], datatype: 'FP32', data: Array.from(x) }],
            }),
          ),
          base64: true,
          headers: { 'content-type': 'application/json' },
        },
      ),
    );
    expect(b64.statusCode).toBe(200);
    expectClose((bodyJson(b64).outputs as { data: number[] }[])[0]!.data, mlpReference(mlp.weights, x, 1));
  });

  it("a response over Lambda's 6 MB limit is a 413 that suggests binary outputs; in binary it fits", async () => {
    const values = randomFloat32(mulberry32(5), 250_000 * 3);
    const send = (binaryOut: boolean): ReturnType<typeof apiEvent> => {
      const { body, headerLength } = binaryBody(
        {
          inputs: [
            {
              name: 'input',
              shape: [250_000, 3],
              datatype: 'FP32',
              parameters: { binary_data_size: values.byteLength },
            },
          ],
          parameters: { binary_data_output: binaryOut },
        },
        [values],
      );
      return apiEvent(
        'POST /v2/models/{name}/infer',
        { name: 'id-fp32' },
        { body, headers: { 'inference-header-content-length': String(headerLength) } },
      );
    };
    const tooBig = await invoke(send(false));
    expect(tooBig.statusCode).toBe(413);
    expect(bodyJson(tooBig).error).toMatch(/exceeds Lambda's 6291456-byte limit.*binary outputs/);
    const fits = await invoke(send(true));
    expect(fits.statusCode).toBe(200);
    const out = bodyBuffer(fits);
    expect(
      out
        .subarray(Number(fits.headers?.['inference-header-content-length']))
        .equals(Buffer.from(values.buffer)),
    ).toBe(true);
  });
});

describe('bad requests get a 4xx naming the problem, and the function keeps serving', () => {
  const good = {
    inputs: [{ name: 'input', shape: [1, 16], datatype: 'FP32', data: new Array(16).fill(0.5) }],
  };
  const input = (patch: Record<string, unknown>): unknown => ({ inputs: [{ ...good.inputs[0], ...patch }] });
  const cases: [string, () => ReturnType<typeof inferEvent>, number, RegExp][] = [
    [
      'malformed JSON',
      () =>
        apiEvent(
          'POST /v2/models/{name}/infer',
          { name: 'mlp' },
          { body: '{"inputs": [', headers: { 'content-type': 'application/json' } },
        ),
      400,
      /malformed JSON/,
    ],
    [
      'not JSON content type',
      () =>
        apiEvent(
          'POST /v2/models/{name}/infer',
          { name: 'mlp' },
          { body: 'a,b', headers: { 'content-type': 'text/csv' } },
        ),
      415,
      /application\/json/,
    ],
    [
      'body over 6 MB',
      () =>
        apiEvent(
          'POST /v2/models/{name}/infer',
          { name: 'mlp' },
          { body: `{"x":"${'a'.repeat(6 * 1024 * 1024)}"}`, headers: { 'content-type': 'application/json' } },
        ),
      413,
      /larger than/,
    ],
    ['no inputs', () => inferEvent('mlp', { inputs: [] }), 400, /missing input 'input'/],
    [
      'unknown input',
      () => inferEvent('mlp', input({ name: 'pixels' })),
      400,
      /unknown input 'pixels'.*'input' FP32 \[-1, 16\]/,
    ],
    ['missing input', () => inferEvent('fixed', { inputs: [] }), 400, /missing input 'input'/],
    [
      'datatype mismatch',
      () => inferEvent('mlp', input({ datatype: 'FP64' })),
      400,
      /input 'input': datatype FP64 does not match the model's FP32/,
    ],
    [
      'unknown datatype',
      () => inferEvent('mlp', input({ datatype: 'FLOAT' })),
      400,
      /input 'input': datatype must be one of/,
    ],
    [
      'wrong rank',
      () => inferEvent('mlp', input({ shape: [16], data: new Array(16).fill(0) })),
      400,
      /input 'input': shape \[16\] has rank 1, the model expects rank 2/,
    ],
    [
      'wrong fixed dim',
      () => inferEvent('mlp', input({ shape: [2, 8] })),
      400,
      /input 'input': dimension 1 is 8, the model expects 16/,
    ],
    [
      'wrong fixed batch',
      () =>
        inferEvent('fixed', {
          inputs: [{ name: 'input', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }],
        }),
      400,
      /dimension 0 is 1, the model expects 2/,
    ],
    [
      'element count ≠ shape',
      () => inferEvent('mlp', input({ shape: [2, 16] })),
      400,
      /input 'input': shape \[2, 16\] holds 32 elements but data has 16/,
    ],
    [
      'wrong element type',
      () => inferEvent('mlp', input({ data: [...new Array(15).fill(0), 'x'] })),
      400,
      /input 'input': element 15 is a string other than "NaN", "Infinity" or "-Infinity", expected a number/,
    ],
    [
      'out of range integer',
      () =>
        inferEvent('id-uint8', {
          inputs: [{ name: 'input', shape: [1, 3], datatype: 'UINT8', data: [1, 2, 256] }],
        }),
      400,
      /element 2 is out of range for UINT8/,
    ],
    [
      'BYTES with NUL',
      () =>
        inferEvent('id-bytes', {
          inputs: [{ name: 'input', shape: [1, 3], datatype: 'BYTES', data: ['a', 'b\u0000c', 'd'] }],
        }),
      400,
      /element 1 contains a NUL/,
    ],
    [
      'unknown output',
      () => inferEvent('mlp', { ...good, outputs: [{ name: 'logits' }] }),
      400,
      /unknown output 'logits'/,
    ],
    ['unknown model', () => inferEvent('nope', good), 404, /model nope does not exist/],
    ['unknown version', () => inferEvent('mlp', good, '99'), 404, /no version 99/],
    ['unknown alias', () => inferEvent('mlp', good, 'staging'), 404, /no alias staging/],
    ['invalid model name', () => inferEvent('Bad Name', good), 400, /invalid model name/],
    [
      'shape beyond array limits',
      () => inferEvent('mlp', input({ shape: [1e5, 1e5, 1e5] })),
      400,
      /input 'input': shape \[100000, 100000, 100000\] holds 1000000000000000 elements but the .*JSON request .* can carry at most/,
    ],
    [
      'shape beyond what the body holds',
      () => inferEvent('mlp', input({ shape: [400000000], data: [] })),
      400,
      /input 'input': shape \[400000000\] holds 400000000 elements but the .*JSON request .* can carry at most/,
    ],
    [
      'binary BYTES shape beyond its bytes',
      () => {
        const { body, headerLength } = binaryBody(
          {
            inputs: [
              {
                name: 'input',
                shape: [1e5, 1e5, 1e5],
                datatype: 'BYTES',
                parameters: { binary_data_size: 8 },
              },
            ],
          },
          [Uint32Array.of(0, 0)],
        );
        return apiEvent(
          'POST /v2/models/{name}/infer',
          { name: 'id-bytes' },
          { body, headers: { 'inference-header-content-length': String(headerLength) } },
        );
      },
      400,
      /input 'input': shape \[100000, 100000, 100000\] .* at most 2/,
    ],
    [
      'binary size past the end',
      () => {
        const { body, headerLength } = binaryBody(
          {
            inputs: [
              { name: 'input', shape: [1, 16], datatype: 'FP32', parameters: { binary_data_size: 64 } },
            ],
          },
          [new Uint8Array(10)],
        );
        return apiEvent(
          'POST /v2/models/{name}/infer',
          { name: 'mlp' },
          { body, headers: { 'inference-header-content-length': String(headerLength) } },
        );
      },
      400,
      /binary_data_size 64 runs past the end/,
    ],
    [
      'binary size ≠ shape',
      () => {
        const { body, headerLength } = binaryBody(
          {
            inputs: [
              { name: 'input', shape: [1, 16], datatype: 'FP32', parameters: { binary_data_size: 60 } },
            ],
          },
          [new Uint8Array(60)],
        );
        return apiEvent(
          'POST /v2/models/{name}/infer',
          { name: 'mlp' },
          { body, headers: { 'inference-header-content-length': String(headerLength) } },
        );
      },
      400,
      /needs 64 bytes \(binary_data_size\) but got 60/,
    ],
    [
      'bad header length',
      () =>
        apiEvent(
          'POST /v2/models/{name}/infer',
          { name: 'mlp' },
          { body: '{}', headers: { 'inference-header-content-length': '99' } },
        ),
      400,
      /Inference-Header-Content-Length/,
    ],
    [
      'binary BYTES not UTF-8',
      () => {
        const chunk = Buffer.concat([
          Buffer.from(Uint32Array.of(1).buffer),
          Buffer.from([0xff]),
          Buffer.from(Uint32Array.of(1).buffer),
          Buffer.from('a'),
          Buffer.from(Uint32Array.of(1).buffer),
          Buffer.from('b'),
        ]);
        const { body, headerLength } = binaryBody(
          {
            inputs: [
              {
                name: 'input',
                shape: [1, 3],
                datatype: 'BYTES',
                parameters: { binary_data_size: chunk.length },
              },
            ],
          },
          [chunk],
        );
        return apiEvent(
          'POST /v2/models/{name}/infer',
          { name: 'id-bytes' },
          { body, headers: { 'inference-header-content-length': String(headerLength) } },
        );
      },
      400,
      /not valid UTF-8/,
    ],
  ];
  for (const [label, make, status, message] of cases) {
    it(`${label} → ${status}`, async () => {
      const res = await invoke(make());
      expect(res.statusCode).toBe(status);
      expect(res.headers?.['content-type']).toBe('application/json');
      const body = bodyJson(res);
      expect(body.error).toMatch(message);
      const ok = await invoke(inferEvent('mlp', good));
      expect(ok.statusCode).toBe(200);
    });
  }

  it('counts client errors per model version, and the cold start once per core', async () => {
    // A fresh core and sink: the counts below are exactly this test's requests.
    await fx.reinstall();
    const mlpDims = { model: 'mlp', version: '1' };
    for (const batch of [1, 3, 8]) {
      const ok = await invoke(
        inferEvent('mlp', {
          inputs: [
            { name: 'input', shape: [batch, 16], datatype: 'FP32', data: new Array(batch * 16).fill(0.5) },
          ],
        }),
      );
      expect(ok.statusCode).toBe(200);
    }
    for (const make of [
      () => inferEvent('mlp', input({ datatype: 'FP64' })),
      () => inferEvent('mlp', input({ shape: [2, 16] })),
      () => inferEvent('mlp', { inputs: [] }),
    ]) {
      expect((await invoke(make())).statusCode).toBe(400);
    }
    expect((await invoke(inferEvent('nope', good))).statusCode).toBe(404);
    expect((await invoke(inferEvent('Bad Name', good))).statusCode).toBe(400);

    expect(fx.metrics.sum('ClientErrors', mlpDims)).toBe(3);
    expect(fx.metrics.sum('Invocations', mlpDims)).toBe(6);
    expect(fx.metrics.sum('ClientErrors')).toBe(5);
    expect(fx.metrics.sum('Invocations')).toBe(8);
    expect(fx.metrics.sum('ServerErrors')).toBe(0);
    expect(fx.metrics.points('InferenceTime', mlpDims)).toHaveLength(3);
    expect(fx.metrics.pending).toHaveLength(0); // flushed after every request
    expect(fx.metrics.sum('ColdStart')).toBe(1); // the core's first invocation only
    expect(fx.metrics.points('BatchSize', mlpDims).map((p) => p.value)).toEqual([1, 3, 8]);
    expect(fx.metrics.points('ModelLoadTime', mlpDims)).toHaveLength(1);
    // Requests that never resolved to a version carry no model dimensions (no client-chosen names).
    expect(fx.metrics.points('ClientErrors').filter((p) => p.dimensions.model === undefined)).toHaveLength(2);
    expect(
      fx.metrics
        .points('ClientErrors')
        .some((p) => p.dimensions.model === 'nope' || p.dimensions.model === 'Bad Name'),
    ).toBe(false);
  });

  it('unknown routes are 404', async () => {
    const res = await invoke(apiEvent('GET /v2/models/{name}/stats', { name: 'mlp' }));
    expect(res.statusCode).toBe(404);
  });
});
