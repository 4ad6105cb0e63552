import type { ModelVersion } from '../../shared/registry/types';
import { bytes, h, table, time } from './dom';

/**
 * The versions table and the lineage of optimized variants (each version under the version it
 * was derived from, `parentVersion`), as a nested list.
 *
 * @example
 * ```ts
 * main.append(...versionsSection(await allPages('/models/iris/versions')));
 * ```
 */
export function versionsSection(versions: ModelVersion[]): HTMLElement[] {
  const sorted = [...versions].sort((a, b) => b.version - a.version);
  const rows = sorted.map((v) => [
    `v${v.version}`,
    h(
      'span',
      { class: `badge ${v.status === 'active' ? 'ok' : v.status === 'rejected' ? 'bad' : 'muted'}` },
      v.status,
    ),
    bytes(v.size),
    h('code', { title: v.sha256 }, `${v.sha256.slice(0, 12)}…`),
    v.source,
    time(v.createdAt),
    v.description || '–',
    Object.entries(v.tags)
      .map(([k, x]) => `${k}=${x}`)
      .join(', ') || '–',
  ]);
  return [
    h(
      'section',
      {},
      h('h2', {}, 'Versions'),
      table(['version', 'status', 'size', 'sha256', 'source', 'created', 'description', 'tags'], rows, {
        id: 'versions',
        class: 'data',
      }),
    ),
    h('section', {}, h('h2', {}, 'Lineage'), lineageTree(versions)),
  ];
}

function lineageTree(versions: ModelVersion[]): HTMLElement {
  const byParent = new Map<number | undefined, ModelVersion[]>();
  const known = new Set(versions.map((v) => v.version));
  for (const v of [...versions].sort((a, b) => a.version - b.version)) {
    // A parent outside the listing (should not happen) roots its children.
    const parent = v.parentVersion !== undefined && known.has(v.parentVersion) ? v.parentVersion : undefined;
    byParent.set(parent, [...(byParent.get(parent) ?? []), v]);
  }
  const branch = (parent: number | undefined): HTMLElement | null => {
    const children = byParent.get(parent);
    if (!children) return null;
    return h(
      'ul',
      parent === undefined ? { class: 'tree', id: 'lineage' } : {},
      ...children.map((v) =>
        h(
          'li',
          { 'data-version': v.version },
          h(
            'span',
            { class: 'node' },
            `v${v.version}`,
            v.optimization ? h('span', { class: 'technique' }, ` ${v.optimization.technique}`) : null,
            v.status !== 'active' ? h('span', { class: 'muted' }, ` (${v.status})`) : null,
          ),
          branch(v.version),
        ),
      ),
    );
  };
  return branch(undefined) ?? h('p', { class: 'empty' }, 'No versions.');
}
