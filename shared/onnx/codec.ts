/**
 * Binary ONNX (protobuf `onnx.ModelProto`) decoding and encoding.
 *
 * Built on onnx-buf (generated from onnx.proto, proto2) and @bufbuild/protobuf. Two properties matter:
 * - fields this schema does not know (newer ONNX versions, vendor extensions) are kept as unknown
 *   fields and written back, so decode → edit → encode never silently drops data;
 * - @bufbuild/protobuf writes fields in field-number order with unknown fields last, which is what
 *   the C++ protobuf serializer (used by the onnx Python package and PyTorch) does, so a canonical
 *   file round-trips byte-identically.
 */
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { type ModelProto, ModelProtoSchema } from 'onnx-buf';
import { UnprocessableError } from '../errors';

export type { ModelProto };

/**
 * Decodes a binary ONNX model.
 *
 * Throws {@link UnprocessableError} when the bytes are not a protobuf ModelProto (garbage,
 * truncated file) or decode to a message with no graph. The no-graph check matters because protobuf
 * is permissive: an empty buffer, or random bytes that happen to parse as a few unknown fields, are
 * "valid" messages. Deeper validation (opsets, inputs, external data) is `inspectModel`'s job (inspect.ts).
 *
 * Bytes fields of the result (e.g. `rawData` of initializers) may be views into `bytes`: do not
 * reuse or mutate the input buffer while the model is in use.
 *
 * @example
 * const model = decodeModel(await readFile('model.onnx'));
 * console.log(model.graph?.node.length);
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, bytes, { readUnknownFields: true });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new UnprocessableError(
      `not a valid ONNX model: protobuf decoding failed (${reason}); the file is truncated, corrupted or not ONNX`,
      { size: bytes.byteLength },
    );
  }
  if (model.graph === undefined) {
    throw new UnprocessableError(
      bytes.byteLength === 0
        ? 'not a valid ONNX model: the file is empty'
        : 'not a valid ONNX model: it has no graph',
      { size: bytes.byteLength },
    );
  }
  return model;
}

/**
 * Encodes a model to binary ONNX, including any unknown fields it was decoded with.
 *
 * @example
 * const model = decodeModel(bytes);
 * model.producerName = 'maas';
 * await writeFile('out.onnx', encodeModel(model));
 */
export function encodeModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model, { writeUnknownFields: true });
}
