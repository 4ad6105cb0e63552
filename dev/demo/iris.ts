/**
 * The demo model `npm start` registers on first start, so the README's first `curl` answers at once.
 *
 * An iris-flower classifier: input `input` FP32 [batch, 4] = sepal length, sepal width, petal
 * length, petal width (cm); outputs `probabilities` FP32 [batch, 3] (setosa, versicolor, virginica)
 * and `label` INT64 [batch] (the argmax). The weights are set by hand, not trained: a linear
 * softmax over petal length and width, which separates the three species of the classic data set
 * except for a few borderline versicolor/virginica flowers. Generated here in TypeScript, so the
 * repository holds no binary model and the bytes are identical on every machine.
 */
import { encodeModel } from '../../shared/onnx/codec';
import type { ModelRegistry, ModelVersion } from '../../shared/registry';
import {
  type BuiltModel,
  makeGraph,
  makeModel,
  makeNode,
  makeValueInfo,
  tensorFromFloat32,
} from '../onnx-builder';

/** Model name the demo is registered under. */
export const DEMO_MODEL_NAME = 'iris';
/** Class of each output column. */
export const IRIS_LABELS = ['setosa', 'versicolor', 'virginica'] as const;
/** Feature of each input column, in order. */
export const IRIS_FEATURES = [
  'sepal_length_cm',
  'sepal_width_cm',
  'petal_length_cm',
  'petal_width_cm',
] as const;

// logits = x · W + b, W row-major [4 features × 3 classes]. Setosa wins for short petals, virginica
// for long/wide ones, versicolor (logit 0) in between: boundaries at petal length + width ≈ 4 and ≈ 7.
const W = new Float32Array([
  0,
  0,
  0, // sepal length: unused
  0,
  0,
  0, // sepal width: unused
  -3,
  0,
  3, // petal length
  -3,
  0,
  3, // petal width
]);
const B = new Float32Array([12, 0, -21]);

/**
 * Builds the demo classifier.
 *
 * @example
 * ```ts
 * const { bytes } = buildIrisClassifier();
 * const session = await ort.InferenceSession.create(bytes);
 * ```
 */
export function buildIrisClassifier(): BuiltModel {
  const graph = makeGraph({
    name: 'iris_linear_softmax',
    nodes: [
      makeNode('MatMul', ['input', 'weights'], ['logits_nobias'], {}, { name: 'matmul' }),
      makeNode('Add', ['logits_nobias', 'bias'], ['logits'], {}, { name: 'add_bias' }),
      makeNode('Softmax', ['logits'], ['probabilities'], { axis: { int: -1 } }, { name: 'softmax' }),
      makeNode(
        'ArgMax',
        ['logits'],
        ['label'],
        { axis: { int: 1 }, keepdims: { int: 0 } },
        { name: 'argmax' },
      ),
    ],
    inputs: [makeValueInfo('input', 'FP32', ['batch', 4])],
    outputs: [
      makeValueInfo('probabilities', 'FP32', ['batch', 3]),
      makeValueInfo('label', 'INT64', ['batch']),
    ],
    initializers: [tensorFromFloat32('weights', [4, 3], W), tensorFromFloat32('bias', [3], B)],
  });
  const model = makeModel(graph, {
    docString: 'maas demo: hand-set linear iris classifier (not trained)',
    metadata: { labels: IRIS_LABELS.join(','), features: IRIS_FEATURES.join(',') },
  });
  return { bytes: encodeModel(model), model };
}

/** Plain-JS reference of {@link buildIrisClassifier}: class probabilities of one flower. */
export function irisReference(features: readonly [number, number, number, number]): number[] {
  const logits = [0, 1, 2].map((c) =>
    features.reduce((acc, x, f) => acc + x * (W[f * 3 + c] ?? 0), B[c] ?? 0),
  );
  const max = Math.max(...logits);
  const exps = logits.map((z) => Math.exp(z - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** Result of {@link seedDemoModel}. */
export interface SeedResult {
  /** False when the model already existed (nothing was written). */
  seeded: boolean;
  version?: ModelVersion;
}

/**
 * Registers the demo model and points its `production` alias at it, but only when no model of
 * that name exists yet: a user's later changes (new versions, rollbacks, a deleted alias) are
 * never undone by restarting.
 *
 * @example
 * ```ts
 * const { seeded } = await seedDemoModel(new ModelRegistry(createObjectStore('file://./.maas')));
 * ```
 */
export async function seedDemoModel(
  registry: ModelRegistry,
  options: { name?: string; alias?: string } = {},
): Promise<SeedResult> {
  const name = options.name ?? DEMO_MODEL_NAME;
  if ((await registry.getLatestVersionNumber(name)) > 0) return { seeded: false };
  const { version } = await registry.registerVersion(name, buildIrisClassifier().bytes, {
    description: 'demo: hand-set linear iris classifier (setosa, versicolor, virginica)',
    tags: { demo: 'true' },
    source: 'demo',
    actor: 'maas-local',
    metadata: { labels: [...IRIS_LABELS], features: [...IRIS_FEATURES] },
    alias: options.alias ?? 'production',
    reason: 'demo model registered on first start',
  });
  return { seeded: true, version };
}
