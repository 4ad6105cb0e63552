import { buildMlp } from '../../dev/onnx-builder';

/** A small, valid ONNX model whose bytes differ for every seed. */
export function tinyModel(seed: number): Uint8Array {
  return buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed }).bytes;
}
