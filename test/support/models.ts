import { buildMlp } from '../../dev/onnx-builder';

/** A small, valid ONNX model whose bytes differ for every seed. */
export function tinyModel(seed: number): Uint8Array {
  return buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed }).bytes;
}

/**
 * The same network as another file: `bytes` (an ONNX ModelProto) with `producer_name` (field 2,
 * where the last occurrence wins) set to `tag`, so that each copy registers with its own sha256
 * and gets a session of its own.
 * @example
 * await registry.registerVersion('det1', distinctCopy(detectorBytes, 'copy-1'));
 */
export function distinctCopy(bytes: Uint8Array, tag: string): Uint8Array {
  const name = Buffer.from(tag);
  if (name.length > 127) throw new Error('tag too long for a one-byte length');
  return Buffer.concat([bytes, Buffer.from([0x12, name.length]), name]);
}
