import { create, toBinary } from '@bufbuild/protobuf';
import { WireType } from '@bufbuild/protobuf/wire';
import { ModelProtoSchema, NodeProtoSchema } from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import {
  buildConvNet,
  buildIdentityModel,
  buildMlp,
  makeGraph,
  makeModel,
  makeNode,
  makeValueInfo,
  mulberry32,
} from '../../dev/onnx-builder';
import { UnprocessableError } from '../../shared/errors';
import { decodeModel, encodeModel } from '../../shared/onnx/codec';

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

describe('codec', () => {
  it('round-trips generated models byte-identically', () => {
    for (const bytes of [
      buildMlp({ inputSize: 8, hiddenSizes: [16, 16], outputSize: 3, seed: 1, softmax: true }).bytes,
      buildConvNet({ seed: 2 }).bytes,
      buildIdentityModel('BYTES', ['batch', 2]).bytes,
    ]) {
      const model = decodeModel(bytes);
      expect(model.graph?.node.length).toBeGreaterThan(0);
      expect(bytesEqual(encodeModel(model), bytes)).toBe(true);
    }
  });

  it('keeps unknown top-level fields (e.g. from a newer ONNX) on round trip', () => {
    const base = buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 3 }).bytes;
    // Field 100 (varint 42) and field 101 (length-delimited "future"): not in onnx.proto 1.20.
    const future = Buffer.from('future');
    const extra = Uint8Array.from([0xa0, 0x06, 42, 0xaa, 0x06, future.length, ...future]);
    const bytes = Uint8Array.from([...base, ...extra]);
    const model = decodeModel(bytes);
    expect(model.$unknown?.map((f) => f.no)).toEqual([100, 101]);
    expect(bytesEqual(encodeModel(model), bytes)).toBe(true);
  });

  it('keeps unknown fields nested deep in the graph', () => {
    const model = decodeModel(buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 4 }).bytes);
    const node = model.graph!.node[0]!;
    node.$unknown = [{ no: 77, wireType: WireType.LengthDelimited, data: Uint8Array.from([3, 1, 2, 3]) }];
    model.graph!.initializer[0]!.$unknown = [
      { no: 99, wireType: WireType.Varint, data: Uint8Array.from([7]) },
    ];
    const bytes = encodeModel(model);

    const again = decodeModel(bytes);
    expect(again.graph!.node[0]!.$unknown?.[0]?.no).toBe(77);
    expect(again.graph!.initializer[0]!.$unknown?.[0]?.no).toBe(99);
    expect(bytesEqual(encodeModel(again), bytes)).toBe(true);
  });

  it('keeps explicitly present default values (proto2 presence)', () => {
    const node = create(NodeProtoSchema, {
      opType: 'Identity',
      input: ['input'],
      output: ['output'],
      domain: '',
    });
    const graph = makeGraph({
      nodes: [node],
      inputs: [makeValueInfo('input', 'FP32', [1])],
      outputs: [makeValueInfo('output', 'FP32', [1])],
    });
    const bytes = encodeModel(makeModel(graph));
    const withoutDomain = encodeModel(
      makeModel(
        makeGraph({
          ...graph,
          nodes: [makeNode('Identity', ['input'], ['output'])],
          inputs: graph.input,
          outputs: graph.output,
        }),
      ),
    );
    expect(bytes.length).toBe(withoutDomain.length + 2); // the empty domain field is really written
    expect(bytesEqual(encodeModel(decodeModel(bytes)), bytes)).toBe(true);
  });

  it('rejects empty, truncated and random bytes with UnprocessableError', () => {
    expect(() => decodeModel(new Uint8Array())).toThrow(/empty/);
    const bytes = buildIdentityModel('FP32', ['batch', 4]).bytes;
    // Every strict prefix: protobuf either hits a premature EOF or loses the graph. (Prefixes that
    // end exactly after the graph are caught by inspectModel's opset check, see inspect tests.)
    let decodedPrefixes = 0;
    for (let n = 0; n < bytes.length; n++) {
      try {
        decodeModel(bytes.subarray(0, n));
        decodedPrefixes++;
      } catch (error) {
        expect(error).toBeInstanceOf(UnprocessableError);
        expect((error as Error).message).toMatch(/^not a valid ONNX model/);
      }
    }
    expect(decodedPrefixes).toBeLessThanOrEqual(1);

    const rand = mulberry32(123);
    for (let i = 0; i < 200; i++) {
      const garbage = Uint8Array.from({ length: 1 + Math.floor(rand() * 4096) }, () =>
        Math.floor(rand() * 256),
      );
      expect(() => decodeModel(garbage)).toThrow(UnprocessableError);
    }
    expect(() => decodeModel(Buffer.from('{"not": "onnx"}'))).toThrow(UnprocessableError);
  });

  it('rejects a well-formed protobuf message that has no graph', () => {
    const bytes = toBinary(ModelProtoSchema, create(ModelProtoSchema, { irVersion: 8n, producerName: 'x' }));
    expect(() => decodeModel(bytes)).toThrow(/no graph/);
  });
});
