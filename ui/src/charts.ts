import uPlot from 'uplot';
import { h } from './dom';

/** One line of a chart: values aligned with the chart's x (seconds), null for gaps. */
export interface Line {
  label: string;
  values: (number | null)[];
  /** CSS colour variable name, e.g. `--primary`. */
  color: string;
  /** Dashed: thresholds. */
  dash?: boolean;
}

/** Chart elements keep their uPlot instance here, so tests can read exactly what is plotted. */
export interface ChartElement extends HTMLElement {
  uplot?: uPlot;
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/**
 * A time-series chart (uPlot) in a titled figure. `x` is in seconds since the epoch.
 *
 * @example
 * ```ts
 * main.append(timeChart('requests', 'Requests per window', xs, [{ label: 'primary', values, color: '--primary' }]));
 * ```
 */
export function timeChart(
  id: string,
  title: string,
  x: number[],
  lines: Line[],
  options: { unit?: string; log?: boolean } = {},
): HTMLElement {
  const unit = options.unit ?? '';
  const target = h('div', {
    class: 'chart',
    id: `chart-${id}`,
    role: 'img',
    'aria-label': title,
  }) as ChartElement;
  const figure = h('figure', { class: 'chart-figure' }, h('figcaption', {}, title), target);
  if (x.length === 0) {
    target.append(h('p', { class: 'empty' }, 'no monitor reports in this range'));
    return figure;
  }
  const axisColor = cssVar('--fg-muted');
  const grid = cssVar('--grid');
  const opts: uPlot.Options = {
    width: 560,
    height: 220,
    cursor: { drag: { x: true, y: false } },
    // Log scale (when asked and every value is positive): a threshold far above the traffic's
    // values (5 s against 2 ms latencies) would otherwise flatten the lines onto the axis.
    scales: {
      x: { time: true },
      ...(options.log && lines.every((l) => l.values.every((v) => v === null || v > 0))
        ? { y: { distr: 3 } }
        : {}),
    },
    axes: [
      { stroke: axisColor, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
      {
        stroke: axisColor,
        grid: { stroke: grid, width: 1 },
        ticks: { stroke: grid },
        size: 60,
        ...(unit ? { label: unit, labelSize: 20 } : {}),
      },
    ],
    series: [
      { label: 'time' },
      ...lines.map((l) => ({
        label: l.label,
        stroke: cssVar(l.color),
        width: l.dash ? 1.5 : 2,
        ...(l.dash ? { dash: [6, 4] } : {}),
        points: { show: !l.dash, size: 5 },
        spanGaps: false,
      })),
    ],
  };
  const data: uPlot.AlignedData = [x, ...lines.map((l) => l.values)];
  // Rendered once attached (uPlot measures its container); width follows the figure.
  requestAnimationFrame(() => {
    const width = Math.max(320, Math.floor(target.getBoundingClientRect().width) || 560);
    target.uplot = new uPlot({ ...opts, width }, data, target);
  });
  return figure;
}
