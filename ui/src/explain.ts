import type { Explanation } from '../../shared/explain/service';
import { h, num } from './dom';

/**
 * The "try it" panel's explanation (the explain route's `explanation`, docs/api/predict.md#explain):
 * Kernel SHAP as one bar per input element sorted by |attribution|, with the expected value and
 * the additivity check; occlusion as a heat map over the image's two trailing dimensions plus the
 * patches that matter most. Every number shown is the route's own (nothing is recomputed here but
 * the heat map's colour scale).
 *
 * @example
 * ```ts
 * result.append(explanationView(res.explanation, inputs[0].data));
 * ```
 */
export function explanationView(e: Explanation, input: ArrayLike<unknown>): HTMLElement {
  const facts: [string, string, string][] = [
    ['prediction', 'prediction', num(e.prediction, 6)],
    ['expected', 'expected value f(baseline)', num(e.expected_value, 6)],
  ];
  if (e.additivity)
    facts.push([
      'additivity',
      'Σ attributions + expected value',
      `${num(e.additivity.sum, 6)} (gap ${num(e.additivity.gap, 3)}, ${e.additivity.ok ? 'ok' : 'NOT additive'})`,
    ]);
  return h(
    'section',
    { id: 'explanation', 'data-method': e.method },
    h('h3', {}, `Why: ${e.method === 'kernel_shap' ? 'Kernel SHAP' : 'occlusion'}`),
    h(
      'p',
      { class: 'muted' },
      `${e.output}[${e.class}] explained over input ${e.input}, baseline ${e.baseline}${e.baseline_key ? ` (${e.baseline_key})` : ''}; ${e.samples} samples${e.exact ? ' (exact Shapley values)' : ''}${e.patch ? `, patch ${e.patch}` : ''}, ${e.model_calls} model calls, ${num(e.time_ms)} ms.`,
    ),
    h(
      'dl',
      { class: 'facts' },
      ...facts.flatMap(([id, label, value]) => [h('dt', {}, label), h('dd', { 'data-fact': id }, value)]),
    ),
    e.method === 'occlusion' ? heatMap(e) : attributionBars(e, input),
  );
}

/** One bar per input element, largest |attribution| first; positive pushes the value up. */
function attributionBars(e: Explanation, input: ArrayLike<unknown>): HTMLElement {
  const values = e.attributions.data;
  const largest = Math.max(...values.map(Math.abs), Number.MIN_VALUE);
  const order = values.map((_, j) => j).sort((a, b) => Math.abs(values[b]!) - Math.abs(values[a]!));
  return h(
    'ol',
    { id: 'attributions', class: 'bars', 'aria-label': 'attributions per input element' },
    ...order.map((j) => {
      const v = values[j]!;
      const x = input[j];
      return h(
        'li',
        { 'data-feature': j, 'data-value': v },
        h(
          'span',
          { class: 'feature' },
          `${e.input}[${j}]${x === undefined ? '' : ` = ${typeof x === 'number' ? num(x, 4) : String(x)}`}`,
        ),
        h(
          'span',
          { class: 'track' },
          h('span', {
            class: `bar ${v >= 0 ? 'pos' : 'neg'}`,
            style: `width: ${((Math.abs(v) / largest) * 100).toFixed(1)}%`,
          }),
        ),
        h('span', { class: 'value' }, `${v >= 0 ? '+' : ''}${num(v, 4)}`),
      );
    }),
  );
}

/** How many of the strongest patches are listed under the heat map. */
const TOP_PATCHES = 5;

/**
 * The occlusion map on a canvas, one pixel per element of the two trailing dimensions (values
 * averaged over the leading ones: occlusion gives every channel of a patch the same value),
 * red where hiding the patch lowers the explained value, blue where it raises it.
 */
function heatMap(e: Explanation): HTMLElement {
  const shape = e.attributions.shape;
  const height = shape.length >= 2 ? shape[shape.length - 2]! : 1;
  const width = shape.at(-1) ?? 1;
  const plane = height * width;
  const layers = Math.max(1, e.attributions.data.length / plane);
  const map = new Float64Array(plane);
  e.attributions.data.forEach((v, i) => {
    map[i % plane]! += v / layers;
  });
  let largest = Number.MIN_VALUE;
  for (const v of map) largest = Math.max(largest, Math.abs(v));
  const canvas = h('canvas', {
    id: 'heatmap',
    width,
    height,
    role: 'img',
    'aria-label': `occlusion heat map, ${height}×${width}`,
  }) as HTMLCanvasElement;
  const ctx = canvas.getContext('2d');
  if (ctx) {
    const image = ctx.createImageData(width, height);
    for (let i = 0; i < plane; i++) {
      const v = map[i]!;
      const strength = Math.round((Math.abs(v) / largest) * 255);
      image.data.set(v >= 0 ? [200, 30, 30, strength] : [30, 80, 200, strength], i * 4);
    }
    ctx.putImageData(image, 0, 0);
  }
  const patch = e.patch ?? 1;
  const cells: { row: number; col: number; value: number }[] = [];
  for (let r = 0; r < height; r += patch)
    for (let c = 0; c < width; c += patch)
      cells.push({ row: r / patch, col: c / patch, value: map[r * width + c]! });
  cells.sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
  return h(
    'div',
    { class: 'occlusion' },
    h('figure', {}, canvas, h('figcaption', {}, 'red: hiding the patch lowers the value; blue: raises it')),
    h(
      'ol',
      { id: 'top-patches', 'aria-label': 'patches that matter most' },
      ...cells
        .slice(0, TOP_PATCHES)
        .map((c) =>
          h(
            'li',
            { 'data-row': c.row, 'data-col': c.col, 'data-value': c.value },
            `patch row ${c.row}, column ${c.col} (elements ${c.row * patch}…, ${c.col * patch}…): ${c.value >= 0 ? '+' : ''}${num(c.value, 4)}`,
          ),
        ),
    ),
  );
}
