/**
 * The local `incoming/` watcher: which files it hands to register-version, when, and in which
 * event shape (the one the real handler's S3 adapter decodes).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { S3Event } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resetRuntime } from '../../functions/lib/runtime';
import { handleS3Event } from '../../functions/register-version/s3-event';
import { IncomingPoller, s3ObjectCreatedEvent } from '../../scripts/local-dev/incoming-poller';
import { ModelRegistry } from '../../shared/registry';
import { decodeS3EventKey, encodeS3EventKey } from '../../shared/registry/incoming';
import { FileObjectStore, S3ObjectStore } from '../../shared/store';
import { tinyModel } from '../support/models';
import { createTestStore, storeKinds } from '../support/stores';

let root: string;
let store: FileObjectStore;
let sent: { key: string; bucket: string; eventName: string }[];
let failNext = 0;

const invoke = async (event: unknown): Promise<unknown> => {
  const record = (
    event as { Records: { eventName: string; s3: { bucket: { name: string }; object: { key: string } } }[] }
  ).Records[0]!;
  if (failNext > 0) {
    failNext--;
    throw new Error('function failed');
  }
  sent.push({
    key: decodeS3EventKey(record.s3.object.key),
    bucket: record.s3.bucket.name,
    eventName: record.eventName,
  });
  return { outcomes: [] };
};

function drop(key: string, content: string): void {
  const file = path.join(root, ...key.split('/'));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
}

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'maas-incoming-'));
  store = new FileObjectStore(root);
  sent = [];
  failNext = 0;
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

describe('IncomingPoller', () => {
  it('sends a file once it stopped changing between two polls, as an S3 ObjectCreated event', async () => {
    const poller = new IncomingPoller(store, invoke, { log: () => {} });
    drop('incoming/iris/model v2.onnx', 'abc');
    expect(await poller.pollOnce()).toEqual([]); // first sight: maybe still being written
    drop('incoming/iris/model v2.onnx', 'abcdef'); // it grew
    expect(await poller.pollOnce()).toEqual([]);
    expect(await poller.pollOnce()).toEqual(['incoming/iris/model v2.onnx']);
    expect(sent).toEqual([
      { key: 'incoming/iris/model v2.onnx', bucket: 'maas-local', eventName: 'ObjectCreated:Put' },
    ]);
  });

  it('does not resend a file the function left in place until it changes', async () => {
    const poller = new IncomingPoller(store, invoke, { log: () => {} });
    drop('incoming/a/m.onnx', 'one');
    await poller.pollOnce();
    await poller.pollOnce();
    expect(await poller.pollOnce()).toEqual([]);
    drop('incoming/a/m.onnx', 'two!');
    await poller.pollOnce();
    expect(await poller.pollOnce()).toEqual(['incoming/a/m.onnx']);
    expect(sent).toHaveLength(2);
  });

  it('retries a failed invocation on a later poll', async () => {
    const poller = new IncomingPoller(store, invoke, { log: () => {} });
    drop('incoming/a/m.onnx', 'x');
    failNext = 1;
    await poller.pollOnce();
    expect(await poller.pollOnce()).toEqual([]); // failed
    expect(await poller.pollOnce()).toEqual(['incoming/a/m.onnx']);
  });

  it('ignores hidden files and downloads in progress', async () => {
    const poller = new IncomingPoller(store, invoke, { log: () => {} });
    drop('incoming/a/.m.onnx.swp', 'x');
    drop('incoming/a/m.onnx.part', 'x');
    drop('incoming/a/m.onnx.crdownload', 'x');
    drop('models-not-incoming.onnx', 'x');
    await poller.pollOnce();
    expect(await poller.pollOnce()).toEqual([]);
  });

  it('encodes keys like S3 notifications, so the handler decodes them back', () => {
    for (const key of ['incoming/iris/a b.onnx', 'incoming/iris/é+%.onnx', 'incoming/x/y/z.onnx']) {
      expect(decodeS3EventKey(encodeS3EventKey(key))).toBe(key);
    }
    expect(encodeS3EventKey('incoming/iris/a b.onnx')).toBe('incoming/iris/a+b.onnx');
    const event = s3ObjectCreatedEvent('bucket', { key: 'incoming/iris/a b.onnx', size: 3, etag: 'e' });
    expect(event.Records[0]).toMatchObject({
      eventSource: 'aws:s3',
      eventName: 'ObjectCreated:Put',
      s3: { bucket: { name: 'bucket' }, object: { key: 'incoming/iris/a+b.onnx', size: 3 } },
    });
  });
});

describe('IncomingPoller with the real register-version S3 handler', () => {
  for (const kind of storeKinds) {
    it(`registers a dropped model and consumes the object (${kind} store)`, async () => {
      const { store: testStore, cleanup } = await createTestStore(kind, 'incoming');
      const saved = process.env.MAAS_STORE;
      try {
        // The handler builds its store from MAAS_STORE (S3_* come from the test setup): point it at the same place.
        process.env.MAAS_STORE =
          testStore instanceof S3ObjectStore
            ? `s3://${testStore.bucket}/${testStore.prefix}`
            : `file://${(testStore as FileObjectStore).root}`;
        resetRuntime();
        const poller = new IncomingPoller(testStore, (event) => handleS3Event(event as S3Event), {
          log: () => {},
        });
        await testStore.put('incoming/flowers/first model.onnx', tinyModel(41));
        await poller.pollOnce();
        expect(await poller.pollOnce()).toEqual(['incoming/flowers/first model.onnx']);
        const registry = new ModelRegistry(testStore);
        const version = await registry.getVersion('flowers', 1);
        expect(version.source).toContain('incoming/flowers/first model.onnx');
        await expect(testStore.head('incoming/flowers/first model.onnx')).rejects.toThrow(/not found/);
      } finally {
        process.env.MAAS_STORE = saved;
        resetRuntime();
        await cleanup();
      }
    });
  }
});
