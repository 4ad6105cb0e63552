/**
 * Recognizes a text-generation model (a decoder-only ONNX graph in the Optimum / transformers.js
 * layout plus its tokenizer files) from its signature and its bundle's file names, so
 * registration can record the kind and refuse an incomplete one before it is stored.
 */
import { UnprocessableError } from '../errors';
import type { OipDatatype } from '../onnx/datatypes';

/** The signature facts detection needs (a subset of `OnnxModelInfo`, also built from an onnxruntime session). */
export interface SignatureLike {
  inputs: readonly { name: string; datatype: OipDatatype; shape: readonly number[] }[];
  outputs: readonly { name: string; datatype: OipDatatype; shape: readonly number[] }[];
}

/**
 * How a decoder graph is driven: `cached` feeds past_key_values and reads present.*, `uncached`
 * re-runs the whole sequence each step, `merged` is cached with a bool `use_cache_branch` input
 * (false at prefill).
 */
export type TextModelKind = 'cached' | 'uncached' | 'merged';

/** What {@link detectTextModel} learns about a text-generation model. */
export interface TextModelSpec {
  kind: TextModelKind;
  /** Decoder blocks with a KV cache (0 for uncached graphs). */
  layers: number;
  /** Whether the graph takes `position_ids`. */
  positionIds: boolean;
  /** KV cache element type (FP32 or FP16); undefined for uncached graphs. */
  cacheDatatype?: 'FP32' | 'FP16';
  /** KV heads and head size when the graph fixes them (-1 otherwise: read config.json). */
  kvHeads: number;
  headDim: number;
  /** Vocabulary size when the graph fixes the last logits dim (-1 otherwise). */
  vocabSize: number;
  /** Whether generation_config.json is present (optional: EOS ids may come from tokenizer_config.json). */
  hasGenerationConfig: boolean;
}

/** Companion files every text-generation bundle must have. */
export const REQUIRED_TEXT_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

const PAST = /^past_key_values\.(\d+)\.(key|value)$/;
const PRESENT = /^present\.(\d+)\.(key|value)$/;

/**
 * Detects whether a graph and its bundle files form a text-generation model. Returns undefined
 * when the graph is not a decoder (no `input_ids` → `logits`), so other models with tokenizer
 * files (e.g. a text classifier) register as before; throws UnprocessableError (422) naming what
 * is missing or inconsistent when it is a decoder that maas could not drive.
 * @example
 * const spec = detectTextModel(inspectModel(bytes), ['model.onnx', 'tokenizer.json', 'tokenizer_config.json']);
 * if (spec) console.log(spec.kind); // 'cached'
 */
export function detectTextModel(
  info: SignatureLike,
  fileNames: readonly string[],
): TextModelSpec | undefined {
  const inputs = new Map(info.inputs.map((t) => [t.name, t]));
  const outputs = new Map(info.outputs.map((t) => [t.name, t]));
  const ids = inputs.get('input_ids');
  const logits = outputs.get('logits');
  if (!ids || !logits) return undefined;
  const problems: string[] = [];
  const refuse = (): never => {
    throw new UnprocessableError(`not a usable text-generation model: ${problems.join('; ')}`, { problems });
  };
  if (ids.datatype !== 'INT64' && ids.datatype !== 'INT32')
    problems.push(`input "input_ids" is ${ids.datatype}, expected INT64`);
  if (ids.shape.length !== 2)
    problems.push(`input "input_ids" has rank ${ids.shape.length}, expected [batch, sequence]`);
  if (logits.shape.length !== 3)
    problems.push(`output "logits" has rank ${logits.shape.length}, expected [batch, sequence, vocab]`);
  if (logits.datatype !== 'FP32' && logits.datatype !== 'FP16')
    problems.push(`output "logits" is ${logits.datatype}, expected FP32 or FP16`);

  const known = new Set(['input_ids', 'attention_mask', 'position_ids', 'use_cache_branch']);
  const past = new Map<number, Set<string>>();
  const present = new Map<number, Set<string>>();
  let cacheDatatype: 'FP32' | 'FP16' | undefined;
  let kvHeads = -1;
  let headDim = -1;
  for (const t of info.inputs) {
    const m = PAST.exec(t.name);
    if (m) {
      const layer = Number(m[1]);
      past.set(layer, (past.get(layer) ?? new Set()).add(m[2] ?? ''));
      if (t.datatype !== 'FP32' && t.datatype !== 'FP16')
        problems.push(`input "${t.name}" is ${t.datatype}, expected FP32 or FP16`);
      else if (cacheDatatype && cacheDatatype !== t.datatype)
        problems.push('past_key_values mix FP32 and FP16');
      else cacheDatatype = t.datatype;
      if (t.shape.length !== 4)
        problems.push(
          `input "${t.name}" has rank ${t.shape.length}, expected [batch, heads, past, head_dim]`,
        );
      else {
        kvHeads = t.shape[1] ?? -1;
        headDim = t.shape[3] ?? -1;
      }
    } else if (!known.has(t.name)) {
      problems.push(
        `input "${t.name}" is not one a decoder takes (input_ids, attention_mask, position_ids, past_key_values.N.key|value, use_cache_branch)`,
      );
    }
  }
  for (const t of info.outputs) {
    const m = PRESENT.exec(t.name);
    if (m) present.set(Number(m[1]), (present.get(Number(m[1])) ?? new Set()).add(m[2] ?? ''));
  }
  if (!inputs.has('attention_mask')) problems.push('input "attention_mask" is missing');
  const layers = past.size;
  for (let i = 0; i < layers; i++) {
    if (past.get(i)?.size !== 2) problems.push(`past_key_values.${i}.key and .value are not both inputs`);
    if (present.get(i)?.size !== 2) problems.push(`present.${i}.key and .value are not both outputs`);
  }
  if (layers === 0 && present.size > 0)
    problems.push('the graph outputs present.* but takes no past_key_values');
  const merged = inputs.has('use_cache_branch');
  if (merged && layers === 0) problems.push('input "use_cache_branch" without past_key_values');
  const missing = REQUIRED_TEXT_FILES.filter((f) => !fileNames.includes(f));
  if (missing.length > 0)
    problems.push(
      `the bundle has no ${missing.join(' or ')} (a text-generation model needs its tokenizer files)`,
    );
  if (problems.length > 0) refuse();
  return {
    kind: layers === 0 ? 'uncached' : merged ? 'merged' : 'cached',
    layers,
    positionIds: inputs.has('position_ids'),
    ...(cacheDatatype ? { cacheDatatype } : {}),
    kvHeads,
    headDim,
    vocabSize: logits.shape[2] ?? -1,
    hasGenerationConfig: fileNames.includes('generation_config.json'),
  };
}
