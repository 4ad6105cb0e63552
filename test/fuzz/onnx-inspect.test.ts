/**
 * Property-based fuzzing of the ONNX inspector, the gate every upload passes: mutated protobufs
 * (flipped bytes, truncations, spliced and duplicated segments of real models) are accepted or
 * refused with a typed 4xx (422 unprocessable, 413 too large), never a 500 or a crash.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildConvNet, buildIdentityModel, buildMlp } from '../../dev/onnx-builder';
import { httpStatusOf, MaasError } from '../../shared/errors';
import { inspectModel } from '../../shared/onnx/inspect';
import { budget } from './budget';

const SEEDS = [
  buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 1 }).bytes,
  buildIdentityModel('BYTES', ['batch', 2]).bytes,
  buildIdentityModel('FP16', [1, 3]).bytes,
  buildConvNet({ seed: 2, inputChannels: 1, imageSize: 4, channels: [2, 2], numClasses: 2 }).bytes,
];

/** inspectModel's answer as the API would send it: 200 when accepted. */
function outcome(bytes: Uint8Array): number {
  try {
    inspectModel(bytes, { maxBytes: 1 << 20 });
    return 200;
  } catch (e) {
    if (!(e instanceof MaasError)) throw e;
    return httpStatusOf(e);
  }
}

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
  fc.record({
    kind: fc.constant('duplicate' as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 64 }),
  }),
  // Varints at their extremes are where length-delimited fields go wrong.
  fc.record({ kind: fc.constant('varint' as const), at: fc.nat(), value: fc.constantFrom(0x7f, 0xff, 0x80) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(seed: Uint8Array, list: Mutation[]): Uint8Array {
  let b = Buffer.from(seed);
  for (const m of list) {
    const at = m.at % (b.length + 1);
    if (m.kind === 'flip' && b.length > 0) b[at % b.length]! ^= m.bits;
    else if (m.kind === 'truncate') b = b.subarray(0, at);
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    else if (m.kind === 'duplicate') b = Buffer.concat([b.subarray(0, at + m.length), b.subarray(at)]);
    else if (m.kind === 'varint')
      b = Buffer.concat([b.subarray(0, at), Buffer.alloc(6, m.value), b.subarray(at)]);
  }
  return b;
}

describe('inspectModel on mutated models (fuzzed)', () => {
  it('every seed model is accepted as is', () => {
    for (const seed of SEEDS) expect(outcome(seed)).toBe(200);
  });

  it('mutated protobufs are accepted or refused with a typed 4xx, never a 500', () => {
    let refused = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: SEEDS.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        (which, list) => {
          const status = outcome(mutate(SEEDS[which]!, list));
          if (status !== 200) refused++;
          expect(status === 200 || status === 413 || status === 422).toBe(true);
        },
      ),
      budget(2500, 4_000),
    );
    expect(refused).toBeGreaterThan(0); // the mutations do reach the error paths
  });

  it('random bytes are refused with a 422', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        expect([200, 422]).toContain(outcome(bytes));
      }),
      budget(2000),
    );
  });
});
