/**
 * The model as the explanation methods see it: a function of a binary mask over "features"
 * (groups of input elements). A feature whose mask bit is 1 keeps the instance's values, 0
 * takes the baseline's. Kernel SHAP's features are single elements; occlusion's are patches.
 *
 * Masks are evaluated in batches along the model's batch dimension (one `session.run` per
 * batch), under a time budget checked before every batch and projected after the first one,
 * so a request that cannot finish in time fails early with a 422 rather than at the gateway.
 */
import { MaasError } from '../errors';
import type { OipTypedArray } from '../onnx/datatypes';

/** Runs the model on `rows` instances laid out back to back in `data`; returns one scalar per row. */
export type BatchRunner = (data: OipTypedArray, rows: number) => Promise<Float64Array>;

/** The request needs more time or samples than the explain budget allows. */
export class ExplainBudgetError extends MaasError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('unprocessable', message, details);
  }
}

/** Options of {@link MaskedModel}. */
export interface MaskedModelOptions {
  /** The instance being explained (one row, flat). */
  instance: OipTypedArray;
  /** Values a masked-out element takes (same length and type as `instance`). */
  baseline: OipTypedArray;
  /** Element indices of each feature. */
  groups: readonly Int32Array[];
  run: BatchRunner;
  /** Rows per model call (1 when the model has no dynamic batch dimension). */
  batchSize: number;
  /** Wall-clock budget for all model calls, in ms. */
  timeBudgetMs: number;
  /** Rows the caller will evaluate in total, for the projection after the first call. */
  plannedRows: number;
  now?: () => number;
}

/**
 * @example
 * ```ts
 * const model = new MaskedModel({ instance, baseline, groups, run, batchSize: 64, timeBudgetMs: 10_000, plannedRows: 130 });
 * const [fx, fb] = await model.evaluate([Uint8Array.of(1, 1), Uint8Array.of(0, 0)]);
 * ```
 */
export class MaskedModel {
  /** Model calls made so far. */
  calls = 0;
  /** Rows evaluated so far. */
  rows = 0;
  /** Milliseconds spent inside the runner. */
  runMs = 0;
  readonly features: number;
  private readonly o: MaskedModelOptions;
  private readonly now: () => number;
  private readonly started: number;

  constructor(options: MaskedModelOptions) {
    this.o = options;
    this.features = options.groups.length;
    this.now = options.now ?? (() => performance.now());
    this.started = this.now();
  }

  /** The model's scalar for each mask, in order. */
  async evaluate(masks: readonly Uint8Array[]): Promise<Float64Array> {
    const out = new Float64Array(masks.length);
    const { instance, baseline, groups } = this.o;
    const width = instance.length;
    const batch = Math.max(1, this.o.batchSize);
    const Ctor = instance.constructor as new (n: number) => OipTypedArray;
    for (let from = 0; from < masks.length; from += batch) {
      this.checkBudget();
      const rows = Math.min(batch, masks.length - from);
      const data = new Ctor(rows * width);
      const target = data as unknown as {
        set(a: ArrayLike<unknown>, offset: number): void;
        [i: number]: unknown;
      };
      const src = instance as unknown as ArrayLike<unknown>;
      for (let r = 0; r < rows; r++) {
        const mask = masks[from + r]!;
        const offset = r * width;
        target.set(baseline as unknown as ArrayLike<unknown>, offset);
        for (let f = 0; f < groups.length; f++) {
          if (!mask[f]) continue;
          const g = groups[f]!;
          for (let k = 0; k < g.length; k++) target[offset + g[k]!] = src[g[k]!];
        }
      }
      const t0 = this.now();
      const values = await this.o.run(data, rows);
      this.runMs += this.now() - t0;
      out.set(values, from);
      this.calls++;
      this.rows += rows;
      if (this.calls === 1) this.checkProjection();
    }
    return out;
  }

  /** Milliseconds since the model was built. */
  elapsedMs(): number {
    return this.now() - this.started;
  }

  private checkBudget(): void {
    const elapsed = this.elapsedMs();
    if (elapsed > this.o.timeBudgetMs)
      throw new ExplainBudgetError(
        `the explanation ran out of its ${this.o.timeBudgetMs} ms budget after ${this.calls} model calls (${this.rows} of ${this.o.plannedRows} samples); request fewer samples or a larger patch`,
        { timeBudgetMs: this.o.timeBudgetMs, calls: this.calls },
      );
  }

  /** After the first call: refuse a plan whose projected duration is beyond the budget. */
  private checkProjection(): void {
    const perRow = this.elapsedMs() / Math.max(1, this.rows);
    const projected = perRow * this.o.plannedRows;
    if (projected > this.o.timeBudgetMs)
      throw new ExplainBudgetError(
        `this explanation needs about ${Math.ceil(projected)} ms (${this.o.plannedRows} samples at ${perRow.toFixed(2)} ms each), more than the ${this.o.timeBudgetMs} ms budget; request fewer samples or a larger patch`,
        { timeBudgetMs: this.o.timeBudgetMs, projectedMs: Math.ceil(projected), samples: this.o.plannedRows },
      );
  }
}

/** A mask with every feature on (the instance itself) or off (the baseline). */
export function fullMask(features: number, on: boolean): Uint8Array {
  return new Uint8Array(features).fill(on ? 1 : 0);
}
