/**
 * The dashboard's API client: same-origin requests to the maas API (served by `npm start`, or
 * forwarded and SigV4-signed by `maas ui`). Mutating calls carry the API key the user entered
 * once (kept in sessionStorage: gone when the tab closes); reads never need it.
 */

const KEY_STORAGE = 'maas.apiKey';

/** An error answer of the API, with its maas `{error, code, details}` body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    readonly details: Record<string, unknown> | undefined,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The API key entered in this tab, if any.
 *
 * @example
 * ```ts
 * if (!apiKey()) showKeyDialog();
 * ```
 */
export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

/**
 * Remembers (or with null forgets) the API key for this tab.
 *
 * @example
 * ```ts
 * setApiKey(input.value || null);
 * ```
 */
export function setApiKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export interface RequestOptions {
  json?: unknown;
  headers?: Record<string, string>;
  query?: Record<string, string | number | undefined>;
}

/**
 * Calls the API and parses the JSON answer; throws {@link ApiError} on 4xx/5xx.
 *
 * @example
 * ```ts
 * const models = await api<{ items: ModelSummary[] }>('GET', '/models');
 * ```
 */
export async function api<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(options.query ?? {}))
    if (v !== undefined) url.searchParams.set(k, String(v));
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  // Marks the request as the dashboard's: `maas ui` forwards nothing else (a cross-site form cannot set it).
  headers['x-maas-ui'] = '1';
  const key = apiKey();
  if (method !== 'GET' && key) headers['x-api-key'] = key;
  let body: string | undefined;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const b = (parsed ?? {}) as {
      error?: string;
      message?: string;
      code?: string;
      details?: Record<string, unknown>;
    };
    throw new ApiError(
      res.status,
      b.code,
      b.details,
      b.error ?? b.message ?? (text.slice(0, 200) || `HTTP ${res.status}`),
    );
  }
  return parsed as T;
}

/** Every page of a paged list route (`{items, nextCursor}`), up to `max` items. */
export async function allPages<T>(
  path: string,
  query: Record<string, string | number | undefined> = {},
  max = 5000,
): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  do {
    const page = await api<{ items: T[]; nextCursor?: string }>('GET', path, { query: { ...query, cursor } });
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor && out.length < max);
  return out;
}
