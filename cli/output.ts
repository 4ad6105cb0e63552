/** How a command prints: a human-readable table, or the API's JSON for scripts (`--json`). */
export interface Output {
  json: boolean;
  /** Prints `data` as JSON, or as the table `render` makes of it. */
  print<T>(data: T, render: (data: T) => string): void;
  /** Status lines for humans; stderr, so stdout stays parseable. */
  info(message: string): void;
}

/**
 * The output of one CLI run.
 *
 * @example
 * ```ts
 * createOutput(opts.json).print(page, (p) => table(['NAME'], p.items.map((m) => [m.name])));
 * ```
 */
export function createOutput(
  json: boolean,
  stdout: NodeJS.WritableStream = process.stdout,
  stderr: NodeJS.WritableStream = process.stderr,
): Output {
  return {
    json,
    print(data, render) {
      stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${render(data)}\n`);
    },
    info(message) {
      stderr.write(`${message}\n`);
    },
  };
}

/**
 * Left-aligned columns, widths fitted to the content.
 *
 * @example
 * ```ts
 * table(['NAME', 'LATEST'], [['iris', 3]]); // 'NAME  LATEST\niris  3'
 * ```
 */
export function table(headers: string[], rows: (string | number | undefined | null)[][]): string {
  const cells = [
    headers,
    ...rows.map((r) => r.map((c) => (c === undefined || c === null || c === '' ? '-' : String(c)))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    .join('\n');
}

/**
 * One page of a list as a table, followed by the `--cursor` hint when more pages exist (the
 * shape every paged list command prints).
 *
 * @example
 * ```ts
 * pageTable(page, ['NAME'], (m) => [m.name]); // 'NAME\niris\n(more: --cursor abc)'
 * ```
 */
export function pageTable<T>(
  page: { items: T[]; nextCursor?: string | null },
  headers: string[],
  row: (item: T) => (string | number | undefined | null)[],
): string {
  const more = page.nextCursor ? `\n(more: --cursor ${page.nextCursor})` : '';
  return `${table(headers, page.items.map(row))}${more}`;
}

/**
 * Key/value lines for one record, values aligned.
 *
 * @example
 * ```ts
 * fields([['name', 'iris'], ['latest', 3]]); // 'name:   iris\nlatest: 3'
 * ```
 */
export function fields(pairs: [string, string | number | undefined | null][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs
    .map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v === undefined || v === null || v === '' ? '-' : v}`)
    .join('\n');
}

/**
 * A model's inputs or outputs on one line, `name:DATATYPE[shape]` each (-1 = dynamic).
 *
 * @example
 * ```ts
 * tensorSignature(version.onnx.inputs); // 'input:FP32[-1,4]'
 * ```
 */
export function tensorSignature(specs: { name: string; datatype: string; shape: number[] }[]): string {
  return specs.map((s) => `${s.name}:${s.datatype}[${s.shape.join(',')}]`).join(' ');
}

/**
 * Human-readable size.
 *
 * @example
 * ```ts
 * formatBytes(1536); // '1.5 KiB'
 * ```
 */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}
