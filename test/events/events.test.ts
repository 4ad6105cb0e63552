/**
 * Registry events end to end on RGW: every change the history records (registrations, alias
 * moves, status changes, rollbacks by a person and by the monitor, breaches, optimization runs)
 * reaches a loopback EventBridge endpoint (decoding what @aws-sdk/client-eventbridge sends over
 * the wire) and a local webhook receiver that checks the HMAC signature, exactly once per change
 * by id; an outage of both loses nothing once they are back.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handler as monitorHandler } from '../../functions/monitor/handler';
import {
  EVENT_ID_HEADER,
  EVENTBRIDGE_SOURCE,
  EventBridgeSink,
  EventOutbox,
  eventsLayout,
  type RegistryEvent,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  toRegistryEvent,
  verifyWebhook,
  WebhookSink,
} from '../../shared/events';
import { CaptureObserver } from '../../shared/monitor/capture';
import type { MonitorMetricPoint, MonitorSinkResult } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import { optimizeVersion } from '../../shared/optimize/optimizer';
import { parseOptimizeRequest } from '../../shared/optimize/request';
import { type HistoryEvent, ModelRegistry } from '../../shared/registry';
import type { ObjectStore } from '../../shared/store';
import { useTestApi } from '../functions/runtime';
import { observation } from '../monitor/support';
import { lambdaContext } from '../predict/support';
import { tinyModel } from '../support/models';
import { createTestStore, type TestStore } from '../support/stores';

const SECRET = 'test-webhook-secret';

interface Receiver {
  url: string;
  /** Events accepted, in arrival order. */
  events: RegistryEvent[];
  /** Requests refused for a bad signature. */
  forged: number;
  down: boolean;
  close(): Promise<void>;
}

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    ),
  );
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/**
 * A loopback EventBridge: the installed client speaks AWS JSON 1.1 (`X-Amz-Target:
 * AWSEvents.PutEvents`); entries are decoded from the body and answered like the service does.
 */
async function fakeEventBridge(): Promise<Receiver & { targets: string[] }> {
  const r = { events: [] as RegistryEvent[], targets: [] as string[], forged: 0, down: false };
  const server = http.createServer(async (req, res) => {
    const body = await readBody(req);
    if (r.down) {
      res.writeHead(500, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ __type: 'InternalException', message: 'injected outage' }));
      return;
    }
    r.targets.push(String(req.headers['x-amz-target']));
    const { Entries } = JSON.parse(body) as {
      Entries: { Source: string; DetailType: string; Detail: string; EventBusName: string; Time: number }[];
    };
    for (const e of Entries) {
      const event = JSON.parse(e.Detail) as RegistryEvent;
      // What a rule would match on: source, detail-type, bus.
      expect(e.Source).toBe(EVENTBRIDGE_SOURCE);
      expect(e.DetailType).toBe(event.type);
      expect(e.EventBusName).toBe('maas-test-events');
      expect(e.Time * 1000).toBe(Date.parse(event.time));
      r.events.push(event);
    }
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(
      JSON.stringify({ FailedEntryCount: 0, Entries: Entries.map((_, i) => ({ EventId: `eb-${i}` })) }),
    );
  });
  const url = await listen(server);
  return Object.assign(r, { url, close: () => new Promise<void>((ok) => server.close(() => ok())) });
}

/** A webhook receiver that accepts only correctly signed events (as a user's endpoint would). */
async function webhookReceiver(): Promise<Receiver & { held: (() => void)[]; hold: boolean }> {
  const r = {
    events: [] as RegistryEvent[],
    forged: 0,
    down: false,
    /** While set, requests are held unanswered (a hanging endpoint) until it is called. */
    held: [] as (() => void)[],
    hold: false,
  };
  const server = http.createServer(async (req, res) => {
    const body = await readBody(req);
    if (r.hold) {
      r.held.push(() => res.writeHead(503).end());
      return;
    }
    if (r.down) {
      res.writeHead(503).end();
      return;
    }
    const timestamp = req.headers[TIMESTAMP_HEADER] as string | undefined;
    if (!verifyWebhook(SECRET, timestamp, body, req.headers[SIGNATURE_HEADER] as string | undefined)) {
      r.forged++;
      res.writeHead(401).end();
      return;
    }
    const event = JSON.parse(body) as RegistryEvent;
    expect(req.headers[EVENT_ID_HEADER]).toBe(event.id);
    expect(Math.abs(Date.now() / 1000 - Number(timestamp))).toBeLessThan(60);
    r.events.push(event);
    res.writeHead(204).end();
  });
  const url = await listen(server);
  return Object.assign(r, {
    url: `${url}/hooks/maas`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  });
}

class MemorySink {
  readonly kind = 'local' as const;
  async put(_ns: string, points: readonly MonitorMetricPoint[]): Promise<MonitorSinkResult> {
    return { calls: 1, delivered: points.length, skippedNonFinite: 0, failedCalls: 0, errors: [] };
  }
}

let ts: TestStore;
let store: ObjectStore;
let bridge: Awaited<ReturnType<typeof fakeEventBridge>>;
let hook: Awaited<ReturnType<typeof webhookReceiver>>;
let outbox: EventOutbox;
let registry: ModelRegistry;

async function allHistory(model: string): Promise<HistoryEvent[]> {
  const items: HistoryEvent[] = [];
  let cursor: string | undefined;
  do {
    const page = await registry.history(model, { limit: 1000, ...(cursor ? { cursor } : {}) });
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

/** Each receiver holds exactly one event per history entry of the model, equal to it, in order. */
async function expectExactlyOnce(model: string): Promise<RegistryEvent[]> {
  const expected = (await allHistory(model)).map((h) => toRegistryEvent(model, h));
  for (const r of [bridge, hook]) {
    const got = r.events.filter((e) => e.model === model);
    const ids = got.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(got).toEqual(expected);
  }
  return expected;
}

beforeAll(async () => {
  ts = await createTestStore('s3', 'events');
  store = ts.store;
  bridge = await fakeEventBridge();
  hook = await webhookReceiver();
  const client = new EventBridgeClient({
    endpoint: bridge.url,
    region: 'eu-west-1',
    credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' },
    maxAttempts: 1,
  });
  outbox = new EventOutbox({
    store,
    sinks: [
      new EventBridgeSink({ busName: 'maas-test-events', client }),
      new WebhookSink({ url: hook.url, secret: SECRET }),
    ],
  });
  registry = new ModelRegistry(store, { onEvent: outbox.hook() });
});
afterAll(async () => {
  await bridge?.close();
  await hook?.close();
  await ts?.cleanup();
});

describe('registry events', () => {
  it('publishes every change once, on EventBridge and on the signed webhook', async () => {
    const model = 'events-a';
    await registry.registerVersion(model, tinyModel(1), {
      alias: 'production',
      actor: 'alice',
      reason: 'launch',
    });
    await registry.registerVersion(model, tinyModel(2), { actor: 'bob' });
    // Registering the same bytes again changes nothing and must publish nothing.
    await registry.registerVersion(model, tinyModel(2), { actor: 'bob' });
    await registry.setAlias(model, 'production', 2, { actor: 'bob', reason: 'promote' });
    await registry.setAlias(model, 'staging', 1, { actor: 'bob' });
    await registry.rollback(model, 'production', { actor: 'carol', reason: 'bad metrics' });
    await registry.setStatus(model, 2, 'rejected', { actor: 'carol' });
    await registry.deleteAlias(model, 'staging', { actor: 'carol' });
    const events = await expectExactlyOnce(model);
    expect(events.map((e) => e.type)).toEqual([
      'version.registered',
      'alias.moved',
      'version.registered',
      'alias.moved',
      'alias.moved',
      'alias.rolled_back',
      'version.status_changed',
      'alias.deleted',
    ]);
    expect(events[5]).toMatchObject({
      schema: 'maas.event/1',
      model,
      alias: 'production',
      version: 1,
      from: 2,
      actor: 'carol',
      automatic: false,
      reason: 'bad metrics',
    });
    expect(hook.forged).toBe(0);
    expect(bridge.targets.every((t) => t === 'AWSEvents.PutEvents')).toBe(true);
    // Nothing is left pending: the sweep publishes nothing more.
    const swept = await outbox.sweep({ full: true });
    expect(swept.results.filter((r) => r.model === model).every((r) => r.published === 0)).toBe(true);
    await expectExactlyOnce(model);
  });

  it('publishes monitor breaches, automatic rollbacks and finished optimizations', async () => {
    const model = 'events-auto';
    await registry.registerVersion(model, tinyModel(11));
    await registry.registerVersion(model, tinyModel(12));
    await registry.setAlias(model, 'production', 1, { actor: 'test' });
    await registry.setAlias(model, 'production', 2, { actor: 'test' });
    const capture = new CaptureObserver(store);
    for (let i = 0; i < 50; i++)
      capture.observe(observation({ model, version: 2, alias: 'production', latencyMs: i < 10 ? 9000 : 20 }));
    await capture.close();
    const run = await runMonitor({
      store,
      registry,
      sink: new MemorySink(),
      graceSeconds: 0,
      models: [model],
      policy: policyFromEnv({ MAAS_ROLLBACK_WINDOWS: '1', MAAS_ROLLBACK_PRIMARY: 'true' }),
    });
    expect(run.models[0]?.report?.actions[0]).toMatchObject({ type: 'rolled_back', ok: true });
    await optimizeVersion(registry, model, 1, parseOptimizeRequest({ techniques: ['fp16'] }), {
      store,
      actor: 'optimize',
    });
    const events = await expectExactlyOnce(model);
    const breach = events.find((e) => e.type === 'monitor.breach');
    expect(breach).toMatchObject({ alias: 'production', version: 2, actor: 'maas-monitor', automatic: true });
    expect(breach?.reason).toMatch(/p99 latency/);
    expect(events.find((e) => e.type === 'alias.rolled_back')).toMatchObject({
      version: 1,
      from: 2,
      automatic: true,
    });
    const finished = events.find((e) => e.type === 'optimization.finished');
    expect(finished).toMatchObject({ version: 1, automatic: true });
    expect(finished?.details?.candidates).toEqual([expect.objectContaining({ technique: 'fp16' })]);
  });

  it('loses nothing during an outage of both sinks: the sweep catches up once they are back', async () => {
    const model = 'events-outage';
    await registry.registerVersion(model, tinyModel(21), { alias: 'production', actor: 'dave' });
    bridge.down = true;
    hook.down = true;
    await registry.registerVersion(model, tinyModel(22), { actor: 'dave' });
    await registry.setAlias(model, 'production', 2, { actor: 'dave' });
    await registry.rollback(model, 'production', { actor: 'dave' });
    // The changes themselves succeeded; their events wait in the history, the model marked pending.
    expect((await registry.getAlias(model, 'production')).version).toBe(1);
    expect(bridge.events.filter((e) => e.model === model)).toHaveLength(2);
    await expect(store.head(eventsLayout.pending(model))).resolves.toBeDefined();
    const during = await outbox.sweep({ full: false });
    expect(during.results.filter((r) => r.model === model).every((r) => r.error)).toBe(true);

    bridge.down = false;
    hook.down = false;
    const after = await outbox.sweep({ full: false });
    expect(after.full).toBe(false);
    expect(after.results.filter((r) => r.model === model).map((r) => r.published)).toEqual([3, 3]);
    await expect(store.head(eventsLayout.pending(model))).rejects.toThrow();
    await expectExactlyOnce(model);
    // A second sweep (or a concurrent publisher) finds nothing left to send.
    await outbox.sweep({ full: true });
    await expectExactlyOnce(model);
  });

  it('publishes an entry stored late with an earlier time, and runs the full sweep once per period', async () => {
    const model = 'events-late';
    await registry.registerVersion(model, tinyModel(31), { actor: 'erin' });
    // A slow writer: its entry's time is a minute before the newest published one (within the lookback).
    const plain = new ModelRegistry(store);
    const [first] = await allHistory(model);
    await plain.appendEvent(model, {
      type: 'status_changed',
      time: new Date(Date.parse(first!.time) - 60_000).toISOString(),
      actor: 'slow',
      version: 1,
      status: 'archived',
    });
    // No hook ran for it (the writer had none, or died): only the daily full sweep finds it.
    const periodic = new EventOutbox({
      store,
      sinks: [new WebhookSink({ url: hook.url, secret: SECRET })],
      fullSweepEveryMs: 3_600_000,
    });
    const first1 = await periodic.sweep();
    expect(first1.full).toBe(true);
    expect(first1.results.find((r) => r.model === model)?.published).toBe(1);
    expect((await periodic.sweep()).full).toBe(false); // claimed for the next hour
    const got = hook.events.filter((e) => e.model === model);
    expect(got.map((e) => e.actor).sort()).toEqual(['erin', 'slow']);
    expect(new Set(got.map((e) => e.id)).size).toBe(2);
  });

  it('publishes from the functions (the runtime wires the hook) and the scheduled monitor run sweeps', async () => {
    const api = await useTestApi('s3', 'fn-events');
    try {
      api.reset({ MAAS_EVENT_WEBHOOK_URL: hook.url, MAAS_EVENT_WEBHOOK_SECRET: SECRET, MAAS_EVENT_BUS: '' });
      const octet = { 'content-type': 'application/octet-stream' };
      const fromModel = () => hook.events.filter((e) => e.model === 'fn-events');
      expect(
        (await api.call('POST', '/models/fn-events/versions', { headers: octet, body: tinyModel(51) }))
          .status,
      ).toBe(201);
      expect(
        (await api.call('POST', '/models/fn-events/versions', { headers: octet, body: tinyModel(52) }))
          .status,
      ).toBe(201);
      expect(
        (await api.call('PUT', '/models/fn-events/aliases/production', { body: { version: 1 } })).status,
      ).toBe(201);
      expect(fromModel().map((e) => e.type)).toEqual([
        'version.registered',
        'version.registered',
        'alias.moved',
      ]);
      hook.down = true;
      expect(
        (await api.call('PUT', '/models/fn-events/aliases/production', { body: { version: 2 } })).status,
      ).toBe(200);
      expect(
        (await api.call('POST', '/models/fn-events/rollback', { body: { alias: 'production' } })).status,
      ).toBe(200);
      expect(fromModel()).toHaveLength(3);
      hook.down = false;
      const run = (await monitorHandler({} as never, lambdaContext())) as {
        eventsSweep?: { published: number };
      };
      expect(run.eventsSweep?.published).toBeGreaterThanOrEqual(2);
      expect(fromModel().map((e) => e.type)).toEqual([
        'version.registered',
        'version.registered',
        'alias.moved',
        'alias.moved',
        'alias.rolled_back',
      ]);
      expect(new Set(fromModel().map((e) => e.id)).size).toBe(5);
      expect(fromModel().at(-1)).toMatchObject({ actor: 'local', automatic: false, version: 1, from: 2 });
    } finally {
      await api.cleanup();
    }
  });

  it('a hanging endpoint does not hold the change: it returns, and the sweep delivers later', async () => {
    const model = 'events-hang';
    const quick = new EventOutbox({
      store,
      sinks: [new WebhookSink({ url: hook.url, secret: SECRET })],
      hookBudgetMs: 200,
    });
    const hurried = new ModelRegistry(store, { onEvent: quick.hook() });
    hook.hold = true;
    await hurried.registerVersion(model, tinyModel(61), { actor: 'gina' });
    // The registration has returned; its event's request reaches the endpoint and stays unanswered.
    await expect.poll(() => hook.held.length).toBe(1);
    hook.hold = false;
    for (const release of hook.held.splice(0)) release();
    await expect
      .poll(
        async () => (await quick.sweep({ full: false })).results.find((r) => r.model === model)?.published,
      )
      .toBe(1);
    const got = hook.events.filter((e) => e.model === model);
    expect(got.map((e) => e.type)).toEqual(['version.registered']);
  });

  it('a receiver rejects a body whose signature does not match', async () => {
    const body = JSON.stringify({ id: 'x' });
    const res = await fetch(hook.url, {
      method: 'POST',
      headers: { [TIMESTAMP_HEADER]: '1', [SIGNATURE_HEADER]: 'v1=00', 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(401);
    expect(hook.forged).toBe(1);
  });
});
