/**
 * The pieces of the inference core that need no model: OIP body codec edge cases, canary
 * choice and settings parsing.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../shared/errors';
import {
  chooseVersion,
  decodeInferRequest,
  encodeInferResponse,
  inferenceSettingsFromEnv,
  jsonDataOf,
  type ModelRoute,
  valuesFromBinary,
  valuesFromJson,
} from '../../shared/inference';
import type { ModelVersion } from '../../shared/registry';

const req = (doc: unknown, headerLength?: string): ReturnType<typeof decodeInferRequest> =>
  decodeInferRequest(Buffer.from(JSON.stringify(doc)), headerLength === undefined ? {} : { headerLength });

describe('OIP codec', () => {
  it('decodes nested data row-major and keeps id, parameters and requested outputs', () => {
    const r = req({
      id: 'x',
      parameters: { binary_data_output: true },
      inputs: [
        {
          name: 'a',
          shape: [2, 2],
          datatype: 'INT32',
          data: [
            [1, 2],
            [3, 4],
          ],
        },
      ],
      outputs: [{ name: 'o' }, { name: 'p', parameters: { binary_data: false } }],
    });
    expect(r.id).toBe('x');
    expect(Array.from(r.inputs[0]!.data as Int32Array)).toEqual([1, 2, 3, 4]);
    expect(r.outputs).toEqual([
      { name: 'o', binary: true },
      { name: 'p', binary: false },
    ]);
  });

  it('the same request as text and as bytes decodes alike', () => {
    const doc = { inputs: [{ name: 'a', shape: [3], datatype: 'FP64', data: [0.1, -2, 3e100] }] };
    const fromText = decodeInferRequest(JSON.stringify(doc), { contentType: 'application/json' });
    const fromBytes = decodeInferRequest(Buffer.from(JSON.stringify(doc)), {
      contentType: 'application/json',
    });
    expect(Array.from(fromText.inputs[0]!.data as Float64Array)).toEqual(
      Array.from(fromBytes.inputs[0]!.data as Float64Array),
    );
    expect(() => decodeInferRequest(JSON.stringify(doc), { contentType: 'text/plain' })).toThrow(
      /expected application\/json/,
    );
  });

  it('rejects what the protocol does not allow, naming the input', () => {
    expect(() => req({ inputs: [{ name: 'a', shape: [-1], datatype: 'FP32', data: [] }] })).toThrow(
      /input 'a': shape must be an array/,
    );
    expect(() =>
      req({
        inputs: [
          { name: 'a', shape: [2], datatype: 'FP32', data: [1, 2] },
          { name: 'a', shape: [2], datatype: 'FP32', data: [1, 2] },
        ],
      }),
    ).toThrow(/given more than once/);
    expect(() => req({ inputs: [{ name: 'a', shape: [2], datatype: 'FP32' }] })).toThrow(
      /input 'a' has no data/,
    );
    expect(() => req({ inputs: [{ name: 'a', shape: [1], datatype: 'INT64', data: [2 ** 60] }] })).toThrow(
      /beyond 2\^53/,
    );
    expect(() => req({ inputs: [{ name: 'a', shape: [1], datatype: 'INT8', data: [1.5] }] })).toThrow(
      /element 0 is not an integer/,
    );
    expect(() => req({ inputs: [{ name: 'a', shape: [1], datatype: 'BOOL', data: ['yes'] }] })).toThrow(
      /expected true or false/,
    );
    expect(() =>
      req({
        inputs: [{ name: 'a', shape: [1], datatype: 'FP32', data: [1] }],
        outputs: [{ name: 'o' }, { name: 'o' }],
      }),
    ).toThrow(/requested more than once/);
    expect(() =>
      req({ inputs: [{ name: 'a', shape: [1], datatype: 'FP32', parameters: { binary_data_size: 4 } }] }),
    ).toThrow(/no Inference-Header-Content-Length/);
    expect(() => req([1, 2])).toThrow(/must be a JSON object/);
  });

  it('binary bytes no input claims are an error', () => {
    const header = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'a', shape: [1], datatype: 'FP32', data: [1] }] }),
    );
    expect(() =>
      decodeInferRequest(Buffer.concat([header, Buffer.alloc(4)]), { headerLength: String(header.length) }),
    ).toThrow(/4 bytes after the header/);
  });

  it('encodes non-finite floats as bare NaN/Infinity/-Infinity (as Triton) and 64-bit integers exactly', () => {
    expect(jsonDataOf('FP32', Float32Array.of(1.5, NaN, -Infinity, Infinity))).toBe(
      '[1.5,NaN,-Infinity,Infinity]',
    );
    expect(jsonDataOf('FP16', Uint16Array.of(0x7e00, 0xfc00))).toBe('[NaN,-Infinity]');
    expect(jsonDataOf('FP64', Float64Array.of(-0, 0, -1))).toBe('[-0,0,-1]');
    expect(jsonDataOf('INT64', BigInt64Array.of(-(2n ** 63n), 2n ** 53n + 1n))).toBe(
      '[-9223372036854775808,9007199254740993]',
    );
    expect(jsonDataOf('BOOL', Uint8Array.of(1, 0))).toBe('[true,false]');
    const { body } = encodeInferResponse({ modelName: 'm', modelVersion: '2', id: 'q"1' }, [
      { name: 'o', datatype: 'BYTES', shape: [1], data: ['é"'], binary: false },
    ]);
    expect(JSON.parse(body as string)).toEqual({
      model_name: 'm',
      model_version: '2',
      id: 'q"1',
      outputs: [{ name: 'o', datatype: 'BYTES', shape: [1], data: ['é"'] }],
    });
  });
});

describe('shapes that claim more than the body carries', () => {
  /** The error a call throws (fails the test when it returns). */
  const thrown = (f: () => unknown): unknown => {
    try {
      f();
    } catch (e) {
      return e;
    }
    throw new Error('expected an error');
  };
  const badRequest = (f: () => unknown, message: RegExp): void => {
    const e = thrown(f);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect((e as Error).message).toMatch(message);
  };

  it('refuses a JSON input claiming 400M elements before allocating them', () => {
    const body = '{"inputs":[{"name":"x","shape":[400000000],"datatype":"FP32","data":[]}]}';
    const before = process.memoryUsage().arrayBuffers;
    badRequest(
      () => decodeInferRequest(body),
      new RegExp(
        `input 'x': shape \\[400000000\\] holds 400000000 elements but the ${body.length}-character JSON request .* can carry at most ${Math.floor(body.length / 2)}`,
      ),
    );
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 << 20);
  });

  it('answers element counts beyond array limits with a 400 naming the input, never a RangeError', () => {
    for (const datatype of ['FP32', 'BYTES', 'INT64']) {
      badRequest(
        () => req({ inputs: [{ name: 'big', shape: [1e5, 1e5, 1e5], datatype, data: [1] }] }),
        /input 'big': shape \[100000, 100000, 100000\]/,
      );
      badRequest(
        () => valuesFromJson('big', datatype as 'FP32', [1e5, 1e5, 1e5], [[1]]),
        /input 'big': shape \[100000, 100000, 100000\] holds 1000000000000000 elements but data has 1/,
      );
    }
    badRequest(
      () => req({ inputs: [{ name: 'huge', shape: [1e6, 1e6, 1e6], datatype: 'FP32', data: [1] }] }),
      /input 'huge': .* more elements than any request can carry/,
    );
    badRequest(
      () => valuesFromBinary('b', 'BYTES', [1e5, 1e5, 1e5], new Uint8Array(8)),
      /input 'b': .* at most 2/,
    );
    badRequest(
      () => valuesFromBinary('b', 'BYTES', [400000000], new Uint8Array(8)),
      /input 'b': shape \[400000000\] holds 400000000 elements but binary_data_size 8 .* at most 2/,
    );
    badRequest(
      () => valuesFromBinary('n', 'FP32', [1e6, 1e6, 1e6], new Uint8Array(8)),
      /input 'n': .* more elements than any request can carry/,
    );
    badRequest(
      () => valuesFromBinary('n', 'FP32', [1e5, 1e5, 1e5], new Uint8Array(8)),
      /input 'n': .* needs 4000000000000000 bytes/,
    );
  });

  it('binary BYTES shapes are bounded by 4 bytes per element, through the decoder', () => {
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 's', shape: [1e5, 1e5, 1e5], datatype: 'BYTES', parameters: { binary_data_size: 8 } },
        ],
      }),
    );
    const body = Buffer.concat([header, Buffer.from(Uint32Array.of(0, 0).buffer)]);
    badRequest(
      () => decodeInferRequest(body, { headerLength: String(header.length) }),
      /input 's': .* at most 2/,
    );
  });

  it('all JSON inputs share the room of one body, and the tightest honest encodings still decode', () => {
    // Single-digit elements take exactly 2 characters each: the bound must let them through.
    const n = 5000;
    const flat = {
      inputs: [{ name: 'a', shape: [n], datatype: 'UINT8', data: new Array<number>(n).fill(7) }],
    };
    expect(req(flat).inputs[0]!.data).toHaveLength(n);
    const nested = {
      inputs: [
        { name: 'a', shape: [n, 1], datatype: 'BOOL', data: Array.from({ length: n }, (_, i) => [i % 2]) },
      ],
    };
    expect(Array.from(req(nested).inputs[0]!.data as Uint8Array).slice(0, 4)).toEqual([0, 1, 0, 1]);
    const empty = { inputs: [{ name: 'a', shape: [0, 1e9], datatype: 'FP32', data: [] }] };
    expect(req(empty).inputs[0]!.data).toHaveLength(0);
    // Input b alone fits the body's room; after a's 100 honest elements it no longer does.
    const text = JSON.stringify({
      inputs: [
        { name: 'a', shape: [100], datatype: 'FP32', data: new Array<number>(100).fill(1) },
        { name: 'b', shape: [80], datatype: 'FP32', data: [1] },
      ],
    });
    const room = Math.floor(text.length / 2);
    expect(room).toBeGreaterThan(80);
    expect(room - 100).toBeLessThan(80);
    badRequest(
      () => decodeInferRequest(text),
      new RegExp(`input 'b': shape \\[80\\] holds 80 elements but the .* can carry at most ${room - 100}$`),
    );
  });
});

describe('canary choice', () => {
  const v = (version: number): ModelVersion => ({ name: 'm', version }) as ModelVersion;
  const route: ModelRoute = {
    name: 'm',
    alias: 'production',
    primary: v(1),
    canary: { version: v(2), weight: 0.25 },
  };
  it('is stable per request id and close to the weight over many ids', () => {
    const picks = Array.from({ length: 4000 }, (_, i) => chooseVersion(route, `id-${i}`).version);
    const share = picks.filter((p) => p === 2).length / picks.length;
    expect(share).toBeGreaterThan(0.22);
    expect(share).toBeLessThan(0.28);
    for (let i = 0; i < 50; i++) expect(chooseVersion(route, `id-${i}`).version).toBe(picks[i]);
    expect(chooseVersion(route, undefined, () => 0.1).version).toBe(2);
    expect(chooseVersion(route, undefined, () => 0.9).version).toBe(1);
    expect(chooseVersion({ name: 'm', primary: v(1) }, 'x').version).toBe(1);
  });

  it('keyed with MAAS_CANARY_SECRET, ids a client picks with the public hash do not steer it onto the canary', () => {
    // What a client can compute without the secret: the unkeyed FNV-1a split.
    const fnv = (id: string) => {
      let h = 0x811c9dc5;
      for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
      return (h >>> 0) / 0x100000000;
    };
    const chosen = Array.from({ length: 20_000 }, (_, i) => `attack-${i}`).filter((id) => fnv(id) < 0.25);
    expect(chosen.length).toBeGreaterThan(4000);
    const secret = inferenceSettingsFromEnv({ MAAS_CANARY_SECRET: 'deployment-secret' }).canarySecret;
    expect(secret).toBe('deployment-secret');
    const onCanary = (s: string) =>
      chosen.filter((id) => chooseVersion(route, id, Math.random, s).version === 2).length / chosen.length;
    expect(onCanary('')).toBe(1); // unkeyed: every picked id lands on the canary
    const keyed = onCanary(secret);
    expect(keyed).toBeGreaterThan(0.2);
    expect(keyed).toBeLessThan(0.3);
    // Still stable per id, and a different secret splits differently.
    for (const id of chosen.slice(0, 50))
      expect(chooseVersion(route, id, Math.random, secret).version).toBe(
        chooseVersion(route, id, Math.random, secret).version,
      );
    const other = chosen.filter(
      (id) =>
        chooseVersion(route, id, Math.random, secret).version !==
        chooseVersion(route, id, Math.random, 'other').version,
    );
    expect(other.length).toBeGreaterThan(chosen.length / 10);
  });
});

describe('settings', () => {
  it('reads MAAS_* with Lambda defaults and refuses nonsense as a server error', () => {
    const s = inferenceSettingsFromEnv({
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '3008',
      MAAS_ALIAS_TTL_MS: '1500',
      MAAS_ORT_GRAPH_OPTIMIZATION: 'basic',
    });
    expect(s.aliasTtlMs).toBe(1500);
    expect(s.sessionCacheBytes).toBe(1504 * 1024 * 1024);
    expect(s.modelCacheDir).toBe('/tmp/maas-models');
    expect(s.session).toMatchObject({ interOpThreads: 1, graphOptimizationLevel: 'basic' });
    expect(inferenceSettingsFromEnv({}).aliasTtlMs).toBeLessThanOrEqual(5000);
    expect(() => inferenceSettingsFromEnv({ MAAS_SESSION_CACHE_MB: 'lots' })).toThrow(
      expect.objectContaining({ kind: 'internal' }),
    );
    expect(() => inferenceSettingsFromEnv({ MAAS_ORT_GRAPH_OPTIMIZATION: 'max' })).toThrow(
      /MAAS_ORT_GRAPH_OPTIMIZATION/,
    );
  });
});
