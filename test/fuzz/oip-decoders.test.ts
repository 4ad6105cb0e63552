/**
 * Property-based fuzzing of the Open Inference Protocol decoders (JSON and the binary tensor
 * extension) and the signature check behind them: whatever the body, the result is a decoded
 * request or a typed 4xx error, never a 500, a crash or a RangeError.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { httpStatusOf, MaasError } from '../../shared/errors';
import {
  checkRequest,
  decodeInferRequest,
  jsonDataOf,
  parseJsonWithNonFinite,
  type Signature,
} from '../../shared/inference';
import { OIP_DATATYPES } from '../../shared/onnx/datatypes';
import { anyValue, applyEdits, edits, requestDoc, VALID } from './arbitraries';
import { budget } from './budget';

const SIGNATURE: Signature = {
  inputs: [
    { name: 'x', datatype: 'FP32', shape: [-1, 3] },
    { name: 's', datatype: 'BYTES', shape: [], unknownRank: true },
  ],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }],
};

/** Decodes and checks; returns the status the API would answer (200 when accepted). */
function outcome(body: Uint8Array | string, contentType?: string, headerLength?: string): number {
  try {
    const request = decodeInferRequest(body, {
      ...(contentType !== undefined ? { contentType } : {}),
      ...(headerLength !== undefined ? { headerLength } : {}),
    });
    checkRequest(request, SIGNATURE);
    return 200;
  } catch (e) {
    if (!(e instanceof MaasError)) throw e; // an untyped error is what the handler turns into a 500
    return httpStatusOf(e);
  }
}

const expect4xxOr200 = (status: number): void => {
  expect(status === 200 || (status >= 400 && status < 500)).toBe(true);
};

describe('OIP JSON decoder (fuzzed)', () => {
  it('the valid seed request is accepted (the mutations below start from something real)', () => {
    expect(outcome(VALID, 'application/json')).toBe(200);
  });

  it('structured requests with wrong types, shapes and values: accepted or a 4xx', () => {
    fc.assert(
      fc.property(requestDoc, (doc) => expect4xxOr200(outcome(JSON.stringify(doc), 'application/json'))),
      budget(1500),
    );
  });

  it('character edits of a valid request (broken JSON, bare literals, NULs): accepted or a 4xx', () => {
    fc.assert(
      fc.property(edits, (list) => expect4xxOr200(outcome(applyEdits(VALID, list), 'application/json'))),
      budget(3000),
    );
  });

  it('arbitrary text and JSON values, as text and as bytes, any content type: accepted or a 4xx', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.json(), fc.string({ maxLength: 200 })),
        fc.boolean(),
        fc.constantFrom(undefined, 'application/json', 'text/plain', 'application/octet-stream'),
        (text, asBytes, contentType) =>
          expect4xxOr200(outcome(asBytes ? Buffer.from(text) : text, contentType)),
      ),
      budget(2000),
    );
  });
});

describe('non-finite floats in JSON (fuzzed round trip)', () => {
  it('any FP64/FP32 data written by the encoder decodes to the same values, NaN and ±Infinity included', () => {
    fc.assert(
      fc.property(fc.array(fc.double(), { maxLength: 40 }), fc.boolean(), (values, single) => {
        const datatype = single ? 'FP32' : 'FP64';
        const sent = single ? Float32Array.from(values) : Float64Array.from(values);
        const text = `{"inputs":[{"name":"x","shape":[${sent.length}],"datatype":"${datatype}","data":${jsonDataOf(datatype, sent)}}]}`;
        const back = decodeInferRequest(text).inputs[0]!.data as Float32Array | Float64Array;
        expect(back.length).toBe(sent.length);
        for (let i = 0; i < sent.length; i++) expect(Object.is(back[i], sent[i])).toBe(true);
        // A JavaScript client reads the same numbers from the response form.
        const read = parseJsonWithNonFinite(jsonDataOf(datatype, sent)) as number[];
        for (let i = 0; i < sent.length; i++) expect(Object.is(read[i], sent[i])).toBe(true);
      }),
      budget(1000),
    );
  });
});

describe('OIP binary tensor extension decoder (fuzzed)', () => {
  const binaryInput = fc.record({
    name: fc.constantFrom('x', 's'),
    datatype: fc.constantFrom(...OIP_DATATYPES),
    shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
    size: fc.oneof(fc.integer({ min: 0, max: 64 }), anyValue),
  });

  it('JSON header + random bytes + any Inference-Header-Content-Length: accepted or a 4xx', () => {
    fc.assert(
      fc.property(
        fc.array(binaryInput, { maxLength: 3 }),
        fc.uint8Array({ maxLength: 96 }),
        fc.oneof(
          fc.constant('exact'),
          fc.string({ maxLength: 6 }),
          fc.integer({ min: -5, max: 400 }).map(String),
        ),
        fc.boolean(),
        (inputs, tail, header, unaligned) => {
          const json = JSON.stringify({
            inputs: inputs.map((i) => ({
              name: i.name,
              datatype: i.datatype,
              shape: i.shape,
              parameters: { binary_data_size: i.size },
            })),
          });
          const head = Buffer.from(json);
          // An odd offset inside a larger buffer: views that cannot be aligned must be copied.
          const whole = Buffer.concat([Buffer.alloc(unaligned ? 1 : 0), head, Buffer.from(tail)]);
          const body = unaligned ? whole.subarray(1) : whole;
          expect4xxOr200(
            outcome(body, 'application/octet-stream', header === 'exact' ? String(head.length) : header),
          );
        },
      ),
      budget(3000),
    );
  });

  it('BYTES elements with random length prefixes and invalid UTF-8: accepted or a 4xx', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 5 }), (bytes, count) => {
        const head = Buffer.from(
          JSON.stringify({
            inputs: [
              {
                name: 's',
                datatype: 'BYTES',
                shape: [count],
                parameters: { binary_data_size: bytes.length },
              },
              { name: 'x', datatype: 'FP32', shape: [0, 3], data: [] },
            ],
          }),
        );
        expect4xxOr200(outcome(Buffer.concat([head, bytes]), undefined, String(head.length)));
      }),
      budget(2000),
    );
  });
});
