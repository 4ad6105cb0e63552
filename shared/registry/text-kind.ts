/**
 * The registration hook that recognizes a text-generation version: `detectTextModel` on the
 * graph's signature and the bundle's file names, plus what the runtime needs from the small JSON
 * companions (context length, whether a chat template exists), so the manifest records it and an
 * incomplete text model is refused (422) before anything is stored.
 */
import { UnprocessableError } from '../errors';
import { detectTextModel } from '../generate/model-kind';
import type { OnnxModelInfo } from '../onnx/inspect';
import type { TextGenerationInfo } from './types';

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A plausible context length (tokenizer_config's model_max_length is often a 1e30 placeholder). */
const contextOf = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 2 ** 31 ? v : undefined;

/**
 * Describes a text-generation version, or returns undefined when the graph is not a decoder
 * (other models with tokenizer files, e.g. a text classifier, register as before). Throws
 * UnprocessableError naming every problem for a decoder maas could not drive, or for companion
 * JSON that does not parse. `readText` reads a companion of the bundle (only small JSON ones are
 * asked for: config.json, tokenizer_config.json).
 * @example
 * const info = await describeTextModel(onnx, ['model.onnx', 'tokenizer.json', 'tokenizer_config.json'], read);
 * info?.kvCache; // 'cached'
 */
export async function describeTextModel(
  onnx: OnnxModelInfo,
  fileNames: readonly string[],
  readText: (name: string) => Promise<string>,
): Promise<TextGenerationInfo | undefined> {
  const spec = detectTextModel(onnx, fileNames);
  if (!spec) return undefined;
  const json = async (name: string): Promise<Record<string, unknown>> => {
    if (!fileNames.includes(name)) return {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readText(name));
    } catch {
      throw new UnprocessableError(`${name} is not valid JSON`, { file: name });
    }
    if (!isObject(parsed)) throw new UnprocessableError(`${name} is not a JSON object`, { file: name });
    return parsed;
  };
  const tokenizerConfig = await json('tokenizer_config.json');
  const config = await json('config.json');
  // The same precedence as the runtime's tokenizer (shared/generate/tokenizer.ts).
  const contextLength = [
    config.max_position_embeddings,
    config.n_positions,
    config.n_ctx,
    config.seq_length,
    tokenizerConfig.model_max_length,
  ]
    .map(contextOf)
    .find((n) => n !== undefined);
  if (contextLength === undefined)
    throw new UnprocessableError(
      'not a usable text-generation model: it states no context length (config.json max_position_embeddings / n_positions, or tokenizer_config.json model_max_length)',
      { file: 'config.json' },
    );
  const template = tokenizerConfig.chat_template;
  return {
    task: 'text-generation',
    kvCache: spec.kind,
    layers: spec.layers,
    ...(spec.cacheDatatype ? { cacheDatatype: spec.cacheDatatype } : {}),
    contextLength,
    vocabSize: spec.vocabSize,
    chatTemplate:
      fileNames.includes('chat_template.jinja') ||
      (typeof template === 'string' && template.length > 0) ||
      (Array.isArray(template) && template.length > 0),
  };
}
