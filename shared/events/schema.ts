/**
 * The published form of a registry history entry: a stable, versioned envelope (docs/api/events.md).
 * History entries are what the registry stores; events are what leaves maas. Their `id` is
 * derived from the stored entry, so every re-publication of one change carries the same id and
 * consumers de-duplicate on it.
 */
import type { HistoryEvent, HistoryEventType } from '../registry/types';

/** Schema identifier of {@link RegistryEvent}; a breaking change gets a new one. */
export const EVENT_SCHEMA = 'maas.event/1';

/** Event types, one per kind of history entry. */
export type RegistryEventType =
  | 'version.registered'
  | 'version.optimized'
  | 'version.status_changed'
  | 'alias.moved'
  | 'alias.rolled_back'
  | 'alias.deleted'
  | 'monitor.breach'
  | 'optimization.finished';

const TYPES: Record<HistoryEventType, RegistryEventType> = {
  registered: 'version.registered',
  optimized: 'version.optimized',
  status_changed: 'version.status_changed',
  alias_moved: 'alias.moved',
  rolled_back: 'alias.rolled_back',
  alias_deleted: 'alias.deleted',
  monitor_breach: 'monitor.breach',
  optimization_finished: 'optimization.finished',
};

/** Actors that are maas itself (automatic changes), as recorded in history. */
export const AUTOMATIC_ACTORS: readonly string[] = ['maas-monitor', 'optimize'];

/** One published registry change. */
export interface RegistryEvent {
  schema: typeof EVENT_SCHEMA;
  /** Unique per change and stable across re-publication: `{model}/{history id}`. */
  id: string;
  type: RegistryEventType;
  /** When the change happened (ISO 8601). */
  time: string;
  model: string;
  actor: string;
  /** True when maas made the change itself (monitor rollbacks and breaches, optimization). */
  automatic: boolean;
  version?: number;
  alias?: string;
  /** Alias changes: the version the alias held before (null: the alias is new). */
  from?: number | null;
  revision?: number;
  status?: string;
  reason?: string;
  details?: Record<string, unknown>;
}

/**
 * The event of one history entry.
 * @example
 * toRegistryEvent('iris', { id: 'alias_moved-2-ab', type: 'alias_moved', time, actor: 'ci', alias: 'production', version: 3, from: 2 });
 */
export function toRegistryEvent(model: string, entry: HistoryEvent): RegistryEvent {
  return {
    schema: EVENT_SCHEMA,
    id: `${model}/${entry.id}`,
    type: TYPES[entry.type] ?? (`other.${entry.type}` as RegistryEventType),
    time: entry.time,
    model,
    actor: entry.actor,
    automatic: AUTOMATIC_ACTORS.includes(entry.actor),
    ...(entry.version !== undefined ? { version: entry.version } : {}),
    ...(entry.alias !== undefined ? { alias: entry.alias } : {}),
    ...(entry.from !== undefined ? { from: entry.from } : {}),
    ...(entry.revision !== undefined ? { revision: entry.revision } : {}),
    ...(entry.status !== undefined ? { status: entry.status } : {}),
    ...(entry.reason !== undefined ? { reason: entry.reason } : {}),
    ...(entry.details !== undefined ? { details: entry.details } : {}),
  };
}
