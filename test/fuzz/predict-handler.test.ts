/**
 * The same fuzzed request bodies (oip-decoders.test.ts) sent end to end through the exported
 * predict handler, with a real model in RGW and onnxruntime behind it: every answer is a 200 or
 * a 4xx with a JSON error, never a 500, and the function keeps serving afterwards.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIdentityModel, makeGraph, makeModel, makeNode, makeValueInfo } from '../../dev/onnx-builder';
import { encodeModel } from '../../shared/onnx/codec';
import { apiEvent, bodyBuffer, invoke, type PredictFixture, predictFixture } from '../predict/support';
import { localCopiesLanded } from '../support/model-cache';
import { applyEdits, edits, requestDoc, VALID } from './arbitraries';
import { budget } from './budget';

let fx: PredictFixture;
beforeAll(async () => {
  fx = await predictFixture();
  await fx.registry.registerVersion('m', buildIdentityModel('FP32', [-1, 3]).bytes);
  // The seed request's inputs ('x' FP32 [-1, 3] and 's' BYTES) belong to this model.
  await fx.registry.registerVersion('xs', twoInputModel());
});
afterAll(async () => {
  await localCopiesLanded(fx.cacheDir, 2);
  await fx?.cleanup();
});

/** 'x' FP32 [-1, 3] and 's' BYTES of any rank, each passed through. */
function twoInputModel(): Uint8Array {
  return encodeModel(
    makeModel(
      makeGraph({
        nodes: [makeNode('Identity', ['x'], ['y']), makeNode('Identity', ['s'], ['t'])],
        inputs: [makeValueInfo('x', 'FP32', [-1, 3]), makeValueInfo('s', 'BYTES')],
        outputs: [makeValueInfo('y', 'FP32', [-1, 3]), makeValueInfo('t', 'BYTES')],
      }),
    ),
  );
}

async function post(model: string, body: string): Promise<number> {
  const res = await invoke(
    apiEvent(
      'POST /v2/models/{name}/infer',
      { name: model },
      { body, headers: { 'content-type': 'application/json' } },
    ),
  );
  const status = res.statusCode ?? 0;
  if (status !== 200) expect(JSON.parse(bodyBuffer(res).toString('utf8'))).toHaveProperty('error');
  return status;
}

describe('predict handler on fuzzed bodies', () => {
  it('structured and edited requests: 200 or a JSON 4xx, never a 500', async () => {
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          requestDoc.map((d) => JSON.stringify(d)),
          edits.map((list) => applyEdits(VALID, list)),
        ),
        fc.constantFrom('m', 'xs'),
        async (body, model) => {
          const status = await post(model, body);
          statuses.add(status);
          expect(status === 200 || (status >= 400 && status < 500)).toBe(true);
        },
      ),
      budget(400, 5_000),
    );
    expect(statuses.has(200) && [...statuses].some((s) => s >= 400)).toBe(true);
    const ok = await post(
      'm',
      '{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,NaN,3]}]}',
    );
    expect(ok).toBe(200);
  });
});
