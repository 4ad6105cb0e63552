/**
 * A `.tar` dropped under `incoming/{name}/` registers as one bundle: through the ingest core on
 * both stores, through the real S3-event handler fed by the local `incoming/` poller, and every
 * archive that could smuggle a path (symlink, hard link, device, folder, nested path, duplicate
 * name) or is not a tar at all is quarantined under `rejected/` with its reason and nothing
 * registered or stored.
 */
import { createHash } from 'node:crypto';
import type { S3Event } from 'aws-lambda';
import { pack } from 'tar-stream';
import { afterEach, describe, expect, it } from 'vitest';
import { resetRuntime } from '../../functions/lib/runtime';
import { handleS3Event } from '../../functions/register-version/s3-event';
import { IncomingPoller } from '../../scripts/local-dev/incoming-poller';
import { ModelRegistry } from '../../shared/registry';
import { ingestIncomingObject, type RejectionRecord } from '../../shared/registry/incoming';
import { type FileObjectStore, listAll, type ObjectStore, S3ObjectStore } from '../../shared/store';
import { buildBundle } from '../support/bundles';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

type Entry = {
  name: string;
  bytes?: Uint8Array;
  type?: 'file' | 'symlink' | 'link' | 'directory' | 'character-device' | 'fifo';
  linkname?: string;
};

/** A tar archive of `entries`, in order (tar-stream's pack: ustar with pax for long names). */
async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const ended = new Promise<void>((resolve) => p.on('end', () => resolve()));
  for (const e of entries) {
    await new Promise<void>((resolve, reject) =>
      p.entry(
        { name: e.name, type: e.type ?? 'file', ...(e.linkname ? { linkname: e.linkname } : {}) },
        e.type === undefined || e.type === 'file'
          ? Buffer.from(e.bytes ?? new Uint8Array())
          : Buffer.alloc(0),
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  }
  p.finalize();
  await ended;
  return Buffer.concat(chunks);
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const blobCount = async (store: ObjectStore): Promise<number> =>
  (await listAll(store, { prefix: 'blobs/' })).objects.length;

describe.each(storeKinds)('a .tar under incoming/ on the %s store', (kind) => {
  let t: TestStore | undefined;
  afterEach(async () => t?.cleanup());

  it('registers a bundle (one data file, a companion; then one file per tensor with ./ names)', async () => {
    t = await createTestStore(kind, 'incoming-tar');
    const { store } = t;
    const registry = new ModelRegistry(store);
    const single = buildBundle({ layout: 'single' });
    const tokenizer = Buffer.from('{"version":"1.0"}');
    await store.put(
      'incoming/llm/v1.tar',
      await tarOf([
        ...single.files.map((f) => ({ name: f.name, bytes: f.bytes })),
        { name: 'tokenizer.json', bytes: tokenizer },
      ]),
      { metadata: { description: 'from a tar' } },
    );
    expect(await ingestIncomingObject(store, registry, 'incoming/llm/v1.tar')).toEqual({
      status: 'registered',
      key: 'incoming/llm/v1.tar',
      name: 'llm',
      version: 1,
    });
    const v1 = await registry.getVersion('llm', 1);
    expect(v1.description).toBe('from a tar');
    expect(v1.source).toContain('incoming/llm/v1.tar');
    expect(v1.files?.map((f) => [f.name, f.role, f.sha256])).toEqual([
      ['model.onnx', 'graph', sha(single.files[0]!.bytes)],
      ['model.onnx.data', 'data', sha(single.files[1]!.bytes)],
      ['tokenizer.json', 'companion', sha(tokenizer)],
    ]);
    await expect(store.head('incoming/llm/v1.tar')).rejects.toThrow(/not found/);

    const perTensor = buildBundle({ layout: 'per-tensor', mlp: { seed: 9 } });
    await store.put(
      'incoming/llm/v2.tar',
      await tarOf([
        { name: './', type: 'directory' },
        ...perTensor.files.map((f) => ({ name: `./${f.name}`, bytes: f.bytes })),
      ]),
    );
    expect(await ingestIncomingObject(store, registry, 'incoming/llm/v2.tar')).toMatchObject({
      status: 'registered',
      version: 2,
    });
    const v2 = await registry.getVersion('llm', 2);
    expect(v2.files).toHaveLength(perTensor.files.length);
    expect(v2.size).toBe(perTensor.files.reduce((n, f) => n + f.bytes.length, 0));
    // The same archive again: the existing version.
    await store.put(
      'incoming/llm/again.tar',
      await tarOf(perTensor.files.map((f) => ({ name: f.name, bytes: f.bytes }))),
    );
    expect(await ingestIncomingObject(store, registry, 'incoming/llm/again.tar')).toMatchObject({
      status: 'duplicate',
      version: 2,
    });
  });

  it('quarantines archives that smuggle paths or are broken, storing nothing', async () => {
    t = await createTestStore(kind, 'incoming-tar');
    const { store } = t;
    const registry = new ModelRegistry(store);
    const b = buildBundle({ layout: 'single', mlp: { seed: 3 } });
    const [graph, data] = b.files.map((f) => ({ name: f.name, bytes: f.bytes }));
    const good = await tarOf([graph!, data!]);
    const cases: [string, Buffer, RegExp][] = [
      [
        'symlink',
        await tarOf([graph!, { name: 'model.onnx.data', type: 'symlink', linkname: '/etc/passwd' }]),
        /symlink/,
      ],
      [
        'hardlink',
        await tarOf([graph!, { name: 'model.onnx.data', type: 'link', linkname: 'model.onnx' }]),
        /link/,
      ],
      ['device', await tarOf([graph!, data!, { name: 'tty', type: 'character-device' }]), /character-device/],
      ['fifo', await tarOf([graph!, data!, { name: 'pipe', type: 'fifo' }]), /fifo/],
      ['folder', await tarOf([{ name: 'sub/', type: 'directory' }, graph!, data!]), /folder/],
      [
        'nested',
        await tarOf([graph!, { name: 'sub/model.onnx.data', bytes: data!.bytes }]),
        /inside a folder/,
      ],
      [
        'traversal',
        await tarOf([graph!, { name: '../model.onnx.data', bytes: data!.bytes }]),
        /inside a folder|relative/,
      ],
      ['duplicate', await tarOf([graph!, data!, { name: 'model.onnx.data', bytes: data!.bytes }]), /twice/],
      [
        'unreferenced',
        await tarOf([graph!, data!, { name: 'extra.bin', bytes: new Uint8Array(8) }]),
        /not referenced/,
      ],
      ['missing data', await tarOf([graph!]), /model\.onnx\.data/],
      ['empty', await tarOf([]), /no files/],
      ['truncated', good.subarray(0, 700), /tar|bytes|truncated|Unexpected/i],
      ['not a tar', Buffer.from('just some text, not an archive at all'.repeat(20)), /tar/i],
    ];
    for (const [label, bytes, reason] of cases) {
      const key = `incoming/evil/${label.replace(/ /g, '-')}.tar`;
      await store.put(key, bytes);
      const outcome = await ingestIncomingObject(store, registry, key);
      expect(outcome.status, label).toBe('rejected');
      const why = JSON.parse(
        (await store.get(`rejected/evil/${label.replace(/ /g, '-')}.tar.error.json`)).body.toString('utf8'),
      ) as RejectionRecord;
      expect(why.error.error, label).toMatch(reason);
      expect(why.error.code, label).toMatch(/invalid_argument|unprocessable/);
    }
    await expect(registry.getLatestVersionNumber('evil')).resolves.toBe(0);
    expect(await blobCount(store)).toBe(0);
    expect((await listAll(store, { prefix: 'incoming/' })).objects).toEqual([]);
  });
});

describe('a .tar dropped locally: the incoming poller and the real S3-event handler', () => {
  for (const kind of storeKinds) {
    it(`registers the bundle and consumes the archive (${kind} store)`, async () => {
      const { store, cleanup } = await createTestStore(kind, 'incoming-tar-poll');
      const saved = process.env.MAAS_STORE;
      try {
        process.env.MAAS_STORE =
          store instanceof S3ObjectStore
            ? `s3://${store.bucket}/${store.prefix}`
            : `file://${(store as FileObjectStore).root}`;
        resetRuntime();
        const poller = new IncomingPoller(store, (event) => handleS3Event(event as S3Event), {
          log: () => {},
        });
        const bundle = buildBundle({ layout: 'per-tensor', mlp: { seed: 21 } });
        await store.put(
          'incoming/dropped/bundle v1.tar',
          await tarOf(bundle.files.map((f) => ({ name: f.name, bytes: f.bytes }))),
        );
        await poller.pollOnce();
        expect(await poller.pollOnce()).toEqual(['incoming/dropped/bundle v1.tar']);
        const version = await new ModelRegistry(store).getVersion('dropped', 1);
        expect(version.files?.map((f) => f.name).sort()).toEqual(bundle.files.map((f) => f.name).sort());
        expect(version.actor).toBe('s3-upload');
        await expect(store.head('incoming/dropped/bundle v1.tar')).rejects.toThrow(/not found/);
      } finally {
        process.env.MAAS_STORE = saved;
        resetRuntime();
        await cleanup();
      }
    });
  }
});
