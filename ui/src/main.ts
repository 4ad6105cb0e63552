/**
 * The maas dashboard: a few pages over the same HTTP API the CLI uses, routed by the URL hash
 * (`#/`, `#/models/{name}`, `…/monitoring`, `…/optimizations`, `…/try`).
 */
import type { ModelDescription } from '../../functions/catalog/describe';
import type { Explanation } from '../../shared/explain/service';
import type { TensorMetadata } from '../../shared/inference/service';
import type { MonitorReport } from '../../shared/monitor/report';
import type { OptimizationJob } from '../../shared/optimize/jobs';
import type { AliasRecord, HistoryEvent, ModelSummary, ModelVersion } from '../../shared/registry/types';
import { ApiError, allPages, api, apiKey, setApiKey } from './api';
import { h, num, table, time } from './dom';
import { explanationView } from './explain';
import { monitoringCharts, RANGES } from './monitoring';
import { versionsSection } from './versions';
import './style.css';

const main = document.getElementById('main')!;
const keyButton = document.getElementById('api-key')!;
const enc = encodeURIComponent;

function setTitle(...parts: string[]): void {
  document.title = [...parts, 'maas'].join(' · ');
}

function errorBox(e: unknown): HTMLElement {
  const message =
    e instanceof ApiError
      ? `${e.message} (HTTP ${e.status}${e.code ? ` ${e.code}` : ''})`
      : String((e as Error)?.message ?? e);
  return h('p', { class: 'error', role: 'alert' }, message);
}

/** Runs `fn` over items with at most `limit` in flight (the model list reads one report per model). */
async function mapLimit<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

async function latestReportOf(name: string): Promise<MonitorReport | undefined> {
  try {
    return await api<MonitorReport>('GET', `/models/${enc(name)}/reports/latest`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return undefined;
    throw e;
  }
}

/** Traffic, errors and drift of a report summed over its versions. */
function reportSummary(r: MonitorReport | undefined): {
  requests: number;
  errorRate: number | null;
  drift: boolean | null;
} {
  if (!r) return { requests: 0, errorRate: null, drift: null };
  const versions = Object.values(r.versions);
  const requests = versions.reduce((s, v) => s + v.requests, 0);
  const errors = versions.reduce((s, v) => s + v.errors, 0);
  const threshold = r.policy.thresholds.psi;
  const psis = versions
    .flatMap((v) => [v.drift.maxInputPsi, v.drift.maxOutputPsi])
    .filter((x): x is number => typeof x === 'number');
  return {
    requests,
    errorRate: requests > 0 ? errors / requests : null,
    drift: psis.length === 0 || threshold === undefined ? null : psis.some((p) => p > threshold),
  };
}

function aliasText(aliases: Record<string, number>, described?: ModelDescription): string {
  return (
    Object.entries(aliases)
      .map(([a, v]) => {
        const canary = described?.aliases[a]?.canary;
        return `${a} → v${v}${canary ? ` (canary v${canary.version} ${Math.round(canary.weight * 100)}%)` : ''}`;
      })
      .join(', ') || '–'
  );
}

// ---------------------------------------------------------------------------------------------
// Models

async function modelsPage(cursor?: string): Promise<void> {
  setTitle('models');
  const page = await api<{ items: ModelSummary[]; nextCursor?: string }>('GET', '/models', {
    query: { limit: 50, cursor },
  });
  const reports = await mapLimit(page.items, 6, (m) => latestReportOf(m.name));
  const rows = page.items.map((m, i) => {
    const s = reportSummary(reports[i]);
    return [
      h('a', { href: `#/models/${enc(m.name)}` }, m.name),
      m.latestVersion,
      aliasText(m.aliases),
      reports[i] ? s.requests : '–',
      s.errorRate === null ? '–' : `${num(s.errorRate * 100)}%`,
      !reports[i]
        ? h('span', { class: 'badge muted' }, 'no report')
        : s.drift === null
          ? h('span', { class: 'badge muted' }, 'no baseline')
          : s.drift
            ? h('span', { class: 'badge bad' }, 'drift')
            : h('span', { class: 'badge ok' }, 'ok'),
      time(reports[i]?.window.to),
    ];
  });
  main.replaceChildren(
    h('h1', {}, 'Models'),
    page.items.length === 0
      ? h('p', { class: 'empty' }, 'No models yet. Register one with `maas register NAME FILE`.')
      : table(
          [
            'model',
            'latest version',
            'aliases',
            'requests (last window)',
            'error rate',
            'drift',
            'window end',
          ],
          rows,
          { id: 'models', class: 'data' },
        ),
    ...(page.nextCursor
      ? [
          h(
            'button',
            { type: 'button', onclick: () => void render(() => modelsPage(page.nextCursor)) },
            'Next page',
          ),
        ]
      : []),
  );
}

// ---------------------------------------------------------------------------------------------
// One model: tabs

function tabs(name: string, current: string): HTMLElement {
  const items: [string, string][] = [
    ['overview', `#/models/${enc(name)}`],
    ['monitoring', `#/models/${enc(name)}/monitoring`],
    ['optimizations', `#/models/${enc(name)}/optimizations`],
    ['try it', `#/models/${enc(name)}/try`],
  ];
  return h(
    'nav',
    { class: 'tabs', 'aria-label': 'model pages' },
    ...items.map(([label, href]) =>
      h('a', { href, ...(label === current ? { 'aria-current': 'page' } : {}) }, label),
    ),
  );
}

function header(name: string, current: string): HTMLElement[] {
  return [
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'models'), ' / ', name),
    h('h1', {}, name),
    tabs(name, current),
  ];
}

/** Shows a modal form asking at least for a reason; resolves to its values, or null when cancelled. */
function askReason(title: string, fields: HTMLElement[] = []): Promise<FormData | null> {
  const form = h(
    'form',
    { method: 'dialog' },
    h('h2', {}, title),
    ...fields,
    h(
      'label',
      {},
      'Reason (recorded in history)',
      h('textarea', { name: 'reason', required: true, rows: 2 }),
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'submit', value: 'ok', class: 'primary' }, 'Confirm'),
      h('button', { type: 'submit', value: 'cancel', formnovalidate: true }, 'Cancel'),
    ),
  ) as HTMLFormElement;
  const dialog = h('dialog', { 'aria-label': title }, form) as HTMLDialogElement;
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const data = dialog.returnValue === 'ok' ? new FormData(form) : null;
      dialog.remove();
      resolve(data);
    });
    dialog.showModal();
  });
}

function versionSelect(name: string, versions: ModelVersion[], selected?: number): HTMLElement {
  return h(
    'label',
    {},
    'Version',
    h(
      'select',
      { name },
      ...versions
        .filter((v) => v.status === 'active')
        .sort((a, b) => b.version - a.version)
        .map((v) =>
          h(
            'option',
            { value: v.version, ...(v.version === selected ? { selected: true } : {}) },
            `v${v.version} ${v.description ? `– ${v.description.slice(0, 40)}` : ''}`,
          ),
        ),
    ),
  );
}

/** The outcome line above the aliases table: a success, or the conflict when someone moved the alias first. */
function outcome(el: HTMLElement, e: unknown, alias: string, fresh?: AliasRecord, seen?: string): void {
  if (e === undefined) return;
  if (e instanceof ApiError && e.status === 412) {
    el.replaceChildren(
      h(
        'div',
        { class: 'conflict', role: 'alert' },
        h('strong', {}, `Conflict: ${alias} was moved by someone else first; your change was not applied.`),
        fresh
          ? h(
              'p',
              {},
              `It now points at v${fresh.version}${fresh.canary ? ` (canary v${fresh.canary.version} at ${fresh.canary.weight})` : ''}, revision ${fresh.revision}, by ${fresh.actor} at ${time(fresh.updatedAt)}${fresh.reason ? `: “${fresh.reason}”` : ''}. Its etag is ${fresh.etag}${seen ? `; the page had ${seen}` : ''}.`,
            )
          : null,
        h('p', {}, 'The table below shows the current state: review it and try again.'),
      ),
    );
  } else if (e instanceof ApiError && e.status === 401) {
    el.replaceChildren(
      h(
        'p',
        { class: 'error', role: 'alert' },
        'The server wants an API key for this: set it with the “API key” button (top right), then retry.',
      ),
    );
  } else el.replaceChildren(errorBox(e));
}

interface AliasAction {
  label: string;
  /** Dialog fields besides the reason. */
  fields: () => HTMLElement[];
  send: (form: FormData, reason: string) => Promise<AliasRecord>;
}

async function modelPage(name: string, notice?: HTMLElement): Promise<void> {
  setTitle(name);
  const [described, versions, history] = await Promise.all([
    api<ModelDescription>('GET', `/models/${enc(name)}`),
    allPages<ModelVersion>(`/models/${enc(name)}/versions`, { limit: 100 }),
    api<{ items: HistoryEvent[] }>('GET', `/models/${enc(name)}/history`, { query: { limit: 1000 } }),
  ]);
  const status = h('div', { id: 'alias-status', 'aria-live': 'polite' }, notice ?? '');
  const reload = (message?: HTMLElement) => render(() => modelPage(name, message));

  const run = async (alias: string, seen: string, action: AliasAction): Promise<void> => {
    const form = await askReason(`${action.label}: ${alias}`, action.fields());
    if (!form) return;
    try {
      const moved = await action.send(form, String(form.get('reason') ?? ''));
      await reload(
        h(
          'p',
          { class: 'ok', role: 'status' },
          `${alias} → v${moved.version}${moved.canary ? ` (canary v${moved.canary.version} at ${moved.canary.weight})` : ''} (revision ${moved.revision})`,
        ),
      );
    } catch (e) {
      const fresh = await api<ModelDescription>('GET', `/models/${enc(name)}`).catch(() => undefined);
      const record = fresh?.aliases[alias];
      await reload();
      outcome(
        document.getElementById('alias-status')!,
        e,
        alias,
        record ? { name, ...record } : undefined,
        seen,
      );
    }
  };

  const put = (alias: string, etag: string | null, body: Record<string, unknown>) =>
    api<AliasRecord>('PUT', `/models/${enc(name)}/aliases/${enc(alias)}`, {
      json: body,
      headers: etag === null ? { 'if-none-match': '*' } : { 'if-match': `"${etag}"` },
    });

  const aliasRows = Object.entries(described.aliases).map(([alias, a]) => {
    const actions: AliasAction[] = [
      {
        label: 'Promote',
        fields: () => [versionSelect('version', versions, a.version)],
        send: (f, reason) => put(alias, a.etag, { version: Number(f.get('version')), reason }),
      },
      {
        label: 'Roll back',
        fields: () => [
          h(
            'p',
            {},
            a.previous.length
              ? `Back to v${a.previous.at(-1)} (held before v${a.version}).`
              : 'Nothing to go back to: the server will refuse.',
          ),
        ],
        send: async (_f, reason) => {
          // The rollback route takes no precondition: check the alias is still what the page shows.
          const now = await api<ModelDescription>('GET', `/models/${enc(name)}`);
          const current = now.aliases[alias];
          if (current && current.etag !== a.etag)
            throw new ApiError(
              412,
              'precondition_failed',
              { etag: current.etag, expected: a.etag },
              'alias changed',
            );
          return api<AliasRecord>('POST', `/models/${enc(name)}/rollback`, { json: { alias, reason } });
        },
      },
      {
        label: a.canary ? 'Change canary' : 'Add canary',
        fields: () => [
          versionSelect(
            'canary',
            versions.filter((v) => v.version !== a.version),
            a.canary?.version,
          ),
          h(
            'label',
            {},
            'Canary weight (share of requests, 0–1)',
            h('input', {
              name: 'weight',
              type: 'number',
              min: 0.01,
              max: 0.99,
              step: 0.01,
              value: a.canary?.weight ?? 0.1,
              required: true,
            }),
          ),
        ],
        send: (f, reason) =>
          put(alias, a.etag, {
            version: a.version,
            reason,
            canary: { version: Number(f.get('canary')), weight: Number(f.get('weight')) },
          }),
      },
    ];
    if (a.canary)
      actions.push({
        label: 'Remove canary',
        fields: () => [],
        send: (_f, reason) => put(alias, a.etag, { version: a.version, reason }),
      });
    return [
      h('strong', {}, alias),
      h('span', { class: 'alias-version' }, `v${a.version}`),
      a.canary ? `v${a.canary.version} at ${Math.round(a.canary.weight * 100)}%` : '–',
      a.previous.length ? a.previous.map((v) => `v${v}`).join(' ← ') : '–',
      `${a.revision} · ${time(a.updatedAt)} · ${a.actor}${a.reason ? ` · “${a.reason}”` : ''}`,
      h(
        'span',
        { class: 'buttons' },
        ...actions.map((act) =>
          h(
            'button',
            { type: 'button', 'data-action': act.label, onclick: () => void run(alias, a.etag, act) },
            `${act.label}…`,
          ),
        ),
      ),
    ];
  });
  const newAlias = h(
    'button',
    {
      type: 'button',
      onclick: () => {
        void (async () => {
          const form = await askReason('Create an alias', [
            h(
              'label',
              {},
              'Alias name',
              h('input', { name: 'alias', required: true, pattern: '[a-z][a-z0-9_\\-]{0,31}' }),
            ),
            versionSelect('version', versions),
          ]);
          if (!form) return;
          const alias = String(form.get('alias'));
          try {
            const moved = await put(alias, null, {
              version: Number(form.get('version')),
              reason: String(form.get('reason')),
            });
            await reload(h('p', { class: 'ok', role: 'status' }, `${alias} → v${moved.version} (created)`));
          } catch (e) {
            outcome(status, e, alias);
          }
        })();
      },
    },
    'New alias…',
  );

  const aliasTable = table(['alias', 'version', 'canary', 'held before', 'last move', ''], aliasRows, {
    id: 'aliases',
    class: 'data',
  });
  for (const [i, alias] of Object.keys(described.aliases).entries())
    aliasTable.querySelectorAll('tbody tr')[i]?.setAttribute('data-alias', alias);

  main.replaceChildren(
    ...header(name, 'overview'),
    h(
      'p',
      {},
      `${described.counts.versions} versions (${described.counts.active} active, ${described.counts.rejected} rejected, ${described.counts.archived} archived); latest v${described.latestVersion}.`,
    ),
    h(
      'section',
      {},
      h('h2', {}, 'Aliases'),
      status,
      Object.keys(described.aliases).length ? aliasTable : h('p', { class: 'empty' }, 'No aliases yet.'),
      newAlias,
    ),
    ...versionsSection(versions),
    h('section', {}, h('h2', {}, 'History'), timeline(history.items)),
  );
}

function timeline(events: HistoryEvent[]): HTMLElement {
  const text = (e: HistoryEvent): string => {
    switch (e.type) {
      case 'registered':
        return `registered v${e.version}`;
      case 'optimized':
        return `registered optimized v${e.version}`;
      case 'alias_moved':
        return `${e.alias}: ${e.from ? `v${e.from}` : 'new'} → v${e.version}`;
      case 'rolled_back':
        return `${e.alias} rolled back ${e.from ? `from v${e.from} ` : ''}to v${e.version}`;
      case 'alias_deleted':
        return `${e.alias} deleted`;
      case 'status_changed':
        return `v${e.version} is now ${e.status}`;
      default:
        return e.type;
    }
  };
  if (events.length === 0) return h('p', { class: 'empty' }, 'No history.');
  return h(
    'ol',
    { class: 'timeline', id: 'history' },
    ...[...events]
      .reverse()
      .map((e) =>
        h(
          'li',
          { class: `event ${e.type}` },
          h('time', { datetime: e.time }, time(e.time)),
          h('span', { class: 'what' }, text(e)),
          h('span', { class: 'who' }, e.actor),
          e.reason ? h('q', {}, e.reason) : null,
        ),
      ),
  );
}

// ---------------------------------------------------------------------------------------------
// Monitoring

async function monitoringPage(name: string, params: URLSearchParams): Promise<void> {
  setTitle('monitoring', name);
  const range = RANGES.find((r) => r.id === params.get('range')) ?? RANGES[2]!;
  const to = new Date();
  const from = new Date(to.getTime() - range.ms);
  const [described, reports] = await Promise.all([
    api<ModelDescription>('GET', `/models/${enc(name)}`),
    allPages<MonitorReport>(`/models/${enc(name)}/reports`, {
      from: from.toISOString(),
      to: to.toISOString(),
      limit: 500,
    }),
  ]);
  const aliases = Object.keys(described.aliases);
  const alias = params.get('alias') ?? (aliases.includes('production') ? 'production' : aliases[0]);
  const go = (changes: Record<string, string>) => {
    const next = new URLSearchParams({ range: range.id, ...(alias ? { alias } : {}), ...changes });
    location.hash = `#/models/${enc(name)}/monitoring?${next}`;
  };
  const controls = h(
    'form',
    { class: 'controls', onsubmit: (e: Event) => e.preventDefault() },
    h(
      'label',
      {},
      'Range ',
      h(
        'select',
        { id: 'range', onchange: (e: Event) => go({ range: (e.target as HTMLSelectElement).value }) },
        ...RANGES.map((r) =>
          h('option', { value: r.id, ...(r.id === range.id ? { selected: true } : {}) }, r.label),
        ),
      ),
    ),
    aliases.length
      ? h(
          'label',
          {},
          'Alias ',
          h(
            'select',
            { id: 'alias', onchange: (e: Event) => go({ alias: (e.target as HTMLSelectElement).value }) },
            ...aliases.map((a) => h('option', { value: a, ...(a === alias ? { selected: true } : {}) }, a)),
          ),
        )
      : null,
    h('span', { class: 'muted' }, `${reports.length} monitor windows`),
  );
  main.replaceChildren(...header(name, 'monitoring'), controls, ...monitoringCharts(reports, alias));
}

// ---------------------------------------------------------------------------------------------
// Optimization jobs

async function optimizationsPage(name: string): Promise<void> {
  setTitle('optimizations', name);
  const jobs = await allPages<OptimizationJob>(`/models/${enc(name)}/optimizations`, { limit: 100 }, 500);
  const ratio = (x: number | undefined) => (x === undefined ? '–' : `×${num(x)}`);
  const sections = [...jobs].reverse().map((job) => {
    const candidates = job.report?.candidates ?? [];
    return h(
      'section',
      { class: 'job', 'data-job': job.job },
      h('h2', {}, `${job.job}: v${job.version}, ${job.status}`),
      h(
        'p',
        { class: 'muted' },
        `by ${job.actor}, ${time(job.createdAt)}${job.finishedAt ? ` → ${time(job.finishedAt)}` : ''}; techniques ${(job.request.techniques ?? []).join(', ')}`,
      ),
      job.error ? h('p', { class: 'error' }, job.error.message) : null,
      candidates.length
        ? table(
            [
              'technique',
              'outcome',
              'size vs parent',
              'latency vs parent (batch 1)',
              'accuracy vs parent',
              'why',
            ],
            candidates.map((c) => {
              const ev = c.evaluation;
              const w = ev?.accuracy.worst;
              return [
                c.technique,
                h(
                  'span',
                  { class: `badge ${c.status === 'registered' ? 'ok' : 'bad'}` },
                  c.status === 'registered' ? `kept as v${c.version}` : c.status,
                ),
                ev ? `${ev.size.candidate} B vs ${ev.size.parent} B (${ratio(ev.size.ratio)})` : '–',
                ev?.latency[0]
                  ? `${num(ev.latency[0].candidate.p50)} ms vs ${num(ev.latency[0].parent.p50)} ms (${ratio(ev.latency[0].ratio)})`
                  : '–',
                w
                  ? `max abs err ${num(w.maxAbsError)}, cosine ${num(w.cosine, 6)}${w.top1Agreement !== undefined ? `, top-1 ${num(w.top1Agreement * 100)}%` : ''}`
                  : '–',
                c.error ?? (c.gate?.passed ? 'passed every check' : (c.gate?.reasons.join('; ') ?? '–')),
              ];
            }),
            { class: 'data' },
          )
        : h('p', { class: 'empty' }, job.summary?.join('; ') ?? 'no candidates measured yet'),
    );
  });
  main.replaceChildren(
    ...header(name, 'optimizations'),
    ...(sections.length
      ? sections
      : [h('p', { class: 'empty' }, 'No optimization jobs. Start one with `maas optimize NAME VERSION`.')]),
  );
}

// ---------------------------------------------------------------------------------------------
// Try it

function defaultShape(shape: number[]): number[] {
  return shape.map((d) => (d < 0 ? 1 : d));
}

async function tryPage(name: string): Promise<void> {
  setTitle('try it', name);
  const meta = await api<{
    name: string;
    versions: string[];
    inputs: TensorMetadata[];
    outputs: TensorMetadata[];
  }>('GET', `/v2/models/${enc(name)}`);
  const result = h('div', { id: 'try-result', 'aria-live': 'polite' });
  const fields = meta.inputs.map((t) => {
    const shape = defaultShape(t.shape);
    const count = shape.reduce((a, b) => a * b, 1);
    return h(
      'fieldset',
      {},
      h('legend', {}, `${t.name}: ${t.datatype} [${t.shape.join(', ')}]`),
      h(
        'label',
        {},
        'Shape',
        h('input', {
          name: `${t.name}.shape`,
          value: shape.join(','),
          pattern: '[0-9]+(,[0-9]+)*',
          required: true,
        }),
      ),
      h(
        'label',
        {},
        'Values (row-major, comma or space separated)',
        h(
          'textarea',
          { name: `${t.name}.data`, rows: 3 },
          Array(Math.min(count, 4096))
            .fill(t.datatype === 'BOOL' ? 'false' : '0')
            .join(', '),
        ),
      ),
    );
  });
  // The explain route takes one numeric input (docs/api/predict.md#explain).
  const explainable = meta.inputs.length === 1 && meta.inputs[0]!.datatype !== 'BYTES';
  const imageShaped = explainable && defaultShape(meta.inputs[0]!.shape).length >= 3;
  const explainControls = explainable
    ? h(
        'fieldset',
        { id: 'explain-controls' },
        h('legend', {}, 'Explanation'),
        h(
          'label',
          { class: 'inline' },
          h('input', { type: 'checkbox', name: 'explain', id: 'explain' }),
          ` Explain the prediction (${imageShaped ? 'occlusion' : 'Kernel SHAP'}, on the primary version)`,
        ),
        h(
          'label',
          {},
          'Baseline',
          h(
            'select',
            { name: 'baseline' },
            ...['auto', 'zeros', 'traffic'].map((b) => h('option', { value: b }, b)),
          ),
        ),
        imageShaped
          ? h(
              'label',
              {},
              'Patch side (empty: default)',
              h('input', { name: 'patch', type: 'number', min: 1 }),
            )
          : null,
      )
    : h('p', { class: 'muted' }, 'Explanations need a model with exactly one numeric input.');
  const form = h(
    'form',
    { id: 'try-form' },
    ...fields,
    explainControls,
    h('button', { type: 'submit', class: 'primary' }, 'Predict'),
  ) as HTMLFormElement;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void (async () => {
      const data = new FormData(form);
      const inputs = meta.inputs.map((t) => {
        const raw = String(data.get(`${t.name}.data`) ?? '')
          .split(/[\s,]+/)
          .filter(Boolean);
        const values =
          t.datatype === 'BYTES'
            ? raw
            : t.datatype === 'BOOL'
              ? raw.map((x) => x === 'true' || x === '1')
              : raw.map(Number);
        return {
          name: t.name,
          datatype: t.datatype,
          shape: String(data.get(`${t.name}.shape`))
            .split(',')
            .map(Number),
          data: values,
        };
      });
      const explain = data.get('explain') === 'on';
      const parameters: Record<string, unknown> = {
        explain_baseline: String(data.get('baseline') ?? 'auto'),
      };
      if (data.get('patch')) parameters.explain_patch = Number(data.get('patch'));
      try {
        const res = await api<{
          model_version: string;
          outputs: { name: string; datatype: string; shape: number[]; data: unknown[] }[];
          explanation?: Explanation;
        }>('POST', `/v2/models/${enc(name)}/${explain ? 'explain' : 'infer'}`, {
          json: explain ? { inputs, parameters } : { inputs },
        });
        result.replaceChildren(
          h('p', {}, `answered by version ${res.model_version}`),
          table(
            ['output', 'datatype', 'shape', 'data'],
            res.outputs.map((o) => [
              o.name,
              o.datatype,
              `[${o.shape.join(', ')}]`,
              h(
                'code',
                {},
                o.data
                  .slice(0, 64)
                  .map((x) => (typeof x === 'number' ? num(x, 4) : String(x)))
                  .join(', ') + (o.data.length > 64 ? ' …' : ''),
              ),
            ]),
            { class: 'data' },
          ),
          res.explanation ? explanationView(res.explanation, inputs[0]!.data) : '',
        );
      } catch (err) {
        result.replaceChildren(errorBox(err));
      }
    })();
  });
  main.replaceChildren(
    ...header(name, 'try it'),
    h(
      'p',
      {},
      `Sends an Open Inference Protocol request to the version the default route serves (latest active or production). Outputs: ${meta.outputs.map((o) => `${o.name} ${o.datatype}`).join(', ')}.`,
    ),
    form,
    result,
  );
}

// ---------------------------------------------------------------------------------------------
// Router

let generation = 0;

async function render(page: () => Promise<void>): Promise<void> {
  const mine = ++generation;
  main.setAttribute('aria-busy', 'true');
  try {
    await page();
  } catch (e) {
    if (mine === generation) main.replaceChildren(errorBox(e));
  } finally {
    if (mine === generation) {
      main.setAttribute('aria-busy', 'false');
      main.dataset.page = location.hash || '#/';
    }
  }
}

function route(): Promise<void> {
  const [path = '', query = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'models' && parts[1]) {
    const name = parts[1];
    if (parts[2] === 'monitoring') return render(() => monitoringPage(name, params));
    if (parts[2] === 'optimizations') return render(() => optimizationsPage(name));
    if (parts[2] === 'try') return render(() => tryPage(name));
    return render(() => modelPage(name));
  }
  return render(() => modelsPage());
}

function showKeyState(): void {
  keyButton.textContent = apiKey() ? 'API key: set' : 'API key';
  keyButton.setAttribute('aria-pressed', apiKey() ? 'true' : 'false');
}

keyButton.addEventListener('click', () => {
  const form = h(
    'form',
    { method: 'dialog' },
    h('h2', {}, 'API key'),
    h(
      'p',
      {},
      'Sent as x-api-key with changes (promote, roll back, canary) when the server has MAAS_API_KEY set. Kept in this tab only (sessionStorage).',
    ),
    h(
      'label',
      {},
      'Key',
      h('input', { name: 'key', type: 'password', autocomplete: 'off', value: apiKey() ?? '' }),
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'submit', value: 'ok', class: 'primary' }, 'Save'),
      h('button', { type: 'submit', value: 'clear' }, 'Forget'),
      h('button', { type: 'submit', value: 'cancel' }, 'Cancel'),
    ),
  ) as HTMLFormElement;
  const dialog = h('dialog', { 'aria-label': 'API key' }, form) as HTMLDialogElement;
  document.body.append(dialog);
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'ok') setApiKey(String(new FormData(form).get('key') ?? '') || null);
    if (dialog.returnValue === 'clear') setApiKey(null);
    dialog.remove();
    showKeyState();
  });
  dialog.showModal();
});

window.addEventListener('hashchange', () => void route());
showKeyState();
void route();
