/**
 * JSON data fidelity through the exported predict handler, with models registered in RGW:
 * non-finite floats travel both ways as Triton and Python's `json` write them (bare `NaN`,
 * `Infinity`, `-Infinity`; quoted forms accepted on input), request ids are bounded, and a model
 * without inputs (a constant generator) registers and serves with `inputs: []`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildIdentityModel,
  makeGraph,
  makeModel,
  makeNode,
  makeValueInfo,
  tensorFromFloat32,
} from '../../dev/onnx-builder';
import { parseJsonWithNonFinite } from '../../shared/inference/tensors';
import { encodeModel } from '../../shared/onnx/codec';
import { localCopiesLanded } from '../support/model-cache';
import {
  apiEvent,
  bodyBuffer,
  bodyJson,
  inferEvent,
  invoke,
  type PredictFixture,
  predictFixture,
} from './support';

let fx: PredictFixture;

/** y = x / 0: the model itself produces Infinity, -Infinity and NaN (0/0). */
function divideByZeroModel(): Uint8Array {
  return encodeModel(
    makeModel(
      makeGraph({
        nodes: [makeNode('Div', ['x', 'zero'], ['y'])],
        inputs: [makeValueInfo('x', 'FP32', [3])],
        outputs: [makeValueInfo('y', 'FP32', [3])],
        initializers: [tensorFromFloat32('zero', [3], new Float32Array(3))],
      }),
    ),
  );
}

/** No inputs at all: a Constant node is the whole graph. */
function constantModel(): Uint8Array {
  return encodeModel(
    makeModel(
      makeGraph({
        nodes: [
          makeNode('Constant', [], ['c'], {
            value: { tensor: tensorFromFloat32('c', [2], Float32Array.of(0.5, -4)) },
          }),
        ],
        inputs: [],
        outputs: [makeValueInfo('c', 'FP32', [2])],
      }),
    ),
  );
}

function rawInfer(name: string, text: string) {
  return apiEvent(
    'POST /v2/models/{name}/infer',
    { name },
    { body: text, headers: { 'content-type': 'application/json' } },
  );
}

const text = (res: Awaited<ReturnType<typeof invoke>>): string => bodyBuffer(res).toString('utf8');

const MODELS = 5;

beforeAll(async () => {
  fx = await predictFixture();
  for (const d of ['FP16', 'FP32', 'FP64'] as const)
    await fx.registry.registerVersion(`id-${d.toLowerCase()}`, buildIdentityModel(d, [3]).bytes);
  await fx.registry.registerVersion('div0', divideByZeroModel());
  await fx.registry.registerVersion('constant', constantModel());
});
afterAll(async () => {
  await localCopiesLanded(fx.cacheDir, MODELS);
  await fx?.cleanup();
});

describe('non-finite floats in JSON', () => {
  it('a model output of Infinity, -Infinity and NaN comes back as the bare literals, not null', async () => {
    const res = await invoke(
      inferEvent('div0', { inputs: [{ name: 'x', shape: [3], datatype: 'FP32', data: [1, -1, 0] }] }),
    );
    expect(res.statusCode).toBe(200);
    expect(text(res)).toContain('"data":[Infinity,-Infinity,NaN]');
    expect(text(res)).not.toContain('null');
    // What a JavaScript client reads (JSON.parse refuses the literals).
    const parsed = parseJsonWithNonFinite(text(res)) as { outputs: { data: unknown[] }[] };
    expect(parsed.outputs[0]?.data).toEqual([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN]);
  });

  it.each(['FP16', 'FP32', 'FP64'])(
    '%s: bare and quoted literals as inputs round-trip exactly',
    async (d) => {
      const bare = `{"id":"Infinity NaN","inputs":[{"name":"input","shape":[3],"datatype":"${d}","data":[NaN, Infinity,-Infinity]}]}`;
      const quoted = `{"inputs":[{"name":"input","shape":[3],"datatype":"${d}","data":["NaN","Infinity","-Infinity"]}]}`;
      for (const body of [bare, quoted]) {
        const res = await invoke(rawInfer(`id-${d.toLowerCase()}`, body));
        expect(res.statusCode, text(res)).toBe(200);
        expect(text(res)).toContain('"data":[NaN,Infinity,-Infinity]');
      }
      // A literal inside a string is text, never a number.
      expect(text(await invoke(rawInfer(`id-${d.toLowerCase()}`, bare)))).toContain('"id":"Infinity NaN"');
      // The response is readable by the reader that wrote the request, so a second trip is identical.
      const first = text(await invoke(rawInfer(`id-${d.toLowerCase()}`, bare)));
      const echoed = parseJsonWithNonFinite(first) as { outputs: { data: unknown[] }[] };
      const again = await invoke(
        rawInfer(
          `id-${d.toLowerCase()}`,
          `{"inputs":[{"name":"input","shape":[3],"datatype":"${d}","data":[${(echoed.outputs[0]?.data ?? []).map(String).join(',')}]}]}`,
        ),
      );
      expect(text(again)).toContain('"data":[NaN,Infinity,-Infinity]');
    },
  );

  it('binary outputs carry the same values (IEEE bits)', async () => {
    const res = await invoke(
      rawInfer(
        'id-fp32',
        '{"inputs":[{"name":"input","shape":[3],"datatype":"FP32","data":[NaN,Infinity,-Infinity]}],"parameters":{"binary_data_output":true}}',
      ),
    );
    expect(res.statusCode).toBe(200);
    const headerLength = Number(res.headers?.['inference-header-content-length']);
    const bytes = bodyBuffer(res).subarray(headerLength);
    const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 12));
    expect(Number.isNaN(values[0])).toBe(true);
    expect([values[1], values[2]]).toEqual([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
  });

  it('a hostile body (megabytes of escaped quotes and a bare NaN) is refused in one pass', async () => {
    // A string-matching regular expression would rescan the rest from every quote: quadratic.
    const body = `{"inputs":[NaN,"${'\\"'.repeat(1_000_000)}`;
    const res = await invoke(rawInfer('id-fp32', body));
    expect(res.statusCode).toBe(400);
    expect(bodyJson(res).error).toMatch(/malformed JSON/);
  });

  it.each([
    ['a bare literal in a BYTES input', 'BYTES', '[NaN,"a","b"]', /element 0 is a bare non-finite number/],
    ['a lower-case spelling', 'FP32', '["nan","inf","-inf"]', /element 0 is a string other than/],
    ['a bare literal in an integer input', 'INT32', '[NaN,1,2]', /element 0 is a bare non-finite/],
    ['a misspelt bare literal', 'FP32', '[Nan,1,2]', /malformed JSON/],
    ['+Infinity (not a JSON or Python form)', 'FP32', '[+Infinity,1,2]', /malformed JSON/],
  ])('%s is a 400', async (_, datatype, data, message) => {
    const res = await invoke(
      rawInfer(
        'id-fp32',
        `{"inputs":[{"name":"input","shape":[3],"datatype":"${datatype}","data":${data}}]}`,
      ),
    );
    expect(res.statusCode).toBe(400);
    expect(bodyJson(res).error).toMatch(message);
  });
});

describe('a model without inputs', () => {
  it('registers, lists inputs: [] and serves inputs: []', async () => {
    const meta = bodyJson(await invoke(apiEvent('GET /v2/models/{name}', { name: 'constant' })));
    expect(meta.inputs).toEqual([]);
    expect(meta.outputs).toEqual([{ name: 'c', datatype: 'FP32', shape: [2] }]);
    const res = await invoke(inferEvent('constant', { inputs: [] }));
    expect(res.statusCode, text(res)).toBe(200);
    expect(bodyJson(res).outputs).toEqual([{ name: 'c', datatype: 'FP32', shape: [2], data: [0.5, -4] }]);
  });

  it('still needs the inputs array, and refuses inputs it does not have', async () => {
    const missing = await invoke(inferEvent('constant', {}));
    expect(missing.statusCode).toBe(400);
    expect(bodyJson(missing).error).toMatch(/"inputs" must be an array/);
    const extra = await invoke(
      inferEvent('constant', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] }),
    );
    expect(extra.statusCode).toBe(400);
    expect(bodyJson(extra).error).toMatch(/unknown input 'x'/);
  });

  it('a model with inputs called with inputs: [] names what is missing', async () => {
    const res = await invoke(inferEvent('id-fp32', { inputs: [] }));
    expect(res.statusCode).toBe(400);
    expect(bodyJson(res).error).toMatch(/missing input 'input'/);
  });
});

// Last: these only use models loaded above, so no background copy of a model to the local
// cache (session-cache keepLocal, not awaited by close) races the fixture's cleanup.
describe('request ids', () => {
  const request = (id: unknown) => ({
    id,
    inputs: [{ name: 'input', shape: [3], datatype: 'FP32', data: [1, 2, 3] }],
  });

  it('accepts an id of 256 characters and echoes it', async () => {
    const id = 'x'.repeat(256);
    const res = await invoke(inferEvent('id-fp32', request(id)));
    expect(res.statusCode).toBe(200);
    expect(bodyJson(res).id).toBe(id);
  });

  it('refuses a longer id with a 400 that says the limit', async () => {
    const res = await invoke(inferEvent('id-fp32', request('x'.repeat(257))));
    expect(res.statusCode).toBe(400);
    expect(bodyJson(res).error).toMatch(/"id" is 257 characters long; at most 256/);
  });

  it('refuses a bare non-finite id', async () => {
    const res = await invoke(
      rawInfer(
        'id-fp32',
        '{"id":NaN,"inputs":[{"name":"input","shape":[3],"datatype":"FP32","data":[1,2,3]}]}',
      ),
    );
    expect(res.statusCode).toBe(400);
    expect(bodyJson(res).error).toMatch(/"id" must be a string/);
  });
});
