import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { toBinary } from '@bufbuild/protobuf';
import { GraphProtoSchema, TensorProtoSchema } from 'onnx-buf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeGraph, makeModel, makeNode, makeValueInfo, tensorFromFloat32 } from '../../dev/onnx-builder';
import {
  ConflictError,
  InvalidArgumentError,
  PayloadTooLargeError,
  UnprocessableError,
} from '../../shared/errors';
import { encodeModel } from '../../shared/onnx/codec';
import { type BundleSource, bundleDigest, ModelRegistry, versionFiles } from '../../shared/registry';
import { listAll, type ObjectStore, S3ObjectStore } from '../../shared/store';
import { buildBundle, editedGraph } from '../support/bundles';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Chunked streams, so the staging path (bodies above inMemoryBytes) is taken. */
const asStream = (bytes: Uint8Array): Readable =>
  Readable.from(
    Array.from({ length: Math.ceil(bytes.length / 1000) }, (_, i) =>
      Buffer.from(bytes.subarray(i * 1000, (i + 1) * 1000)),
    ),
  );

async function keys(store: ObjectStore): Promise<string[]> {
  return (await listAll(store, {})).objects.map((o) => o.key).sort();
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe.each(storeKinds)('ModelRegistry.registerBundle on the %s store', (kind) => {
  let t: TestStore;
  let registry: ModelRegistry;
  beforeAll(async () => {
    t = await createTestStore(kind, 'bundles');
    // Tiny in-memory threshold: every streamed body goes through a staging object and a copy.
    registry = new ModelRegistry(t.store, { inMemoryBytes: 256 });
  });
  afterAll(() => t.cleanup());

  it.each(['single', 'per-tensor'] as const)(
    'registers a %s-data-file bundle: manifest, digest, blobs, verified reads',
    async (layout) => {
      const bundle = buildBundle({ layout, align: 64 });
      const model = `mlp-${layout}`;
      const { version, created } = await registry.registerBundle(
        model,
        bundle.files.map((f, i) =>
          i % 2 === 0
            ? { name: f.name, body: asStream(f.bytes) }
            : { name: f.name, body: f.bytes, size: f.bytes.length },
        ),
        { description: 'bundle' },
      );
      expect(created).toBe(true);
      const files = version.files!;
      expect(files.map((f) => f.name)).toEqual([
        'model.onnx',
        ...bundle.files
          .slice(1)
          .map((f) => f.name)
          .sort(),
      ]);
      expect(files[0]!.role).toBe('graph');
      for (const f of files.slice(1)) expect(f.role).toBe('data');
      for (const f of bundle.files) {
        const entry = files.find((e) => e.name === f.name)!;
        expect(entry.sha256).toBe(sha(f.bytes));
        expect(entry.size).toBe(f.bytes.length);
        expect(entry.blobKey).toBe(
          `blobs/sha256/${sha(f.bytes)}.${f.name === 'model.onnx' ? 'onnx' : 'bin'}`,
        );
        expect((await t.store.get(entry.blobKey)).body.equals(Buffer.from(f.bytes))).toBe(true);
      }
      expect(version.sha256).toBe(
        bundleDigest(bundle.files.map((f) => ({ name: f.name, size: f.bytes.length, sha256: sha(f.bytes) }))),
      );
      expect(version.size).toBe(bundle.files.reduce((n, f) => n + f.bytes.length, 0));
      expect(version.blobKey).toBe(files[0]!.blobKey);
      expect(version.onnx.initializerBytes).toBe(4 * (8 * 16 + 16 + 16 * 3 + 3));
      expect(await registry.getVersion(model, version.version)).toEqual(version);
      expect((await registry.readModel(version)).equals(Buffer.from(bundle.files[0]!.bytes))).toBe(true);
      await registry.verifyModel(version);
      for (const f of versionFiles(version))
        expect(sha(await readAll(await registry.openFile(version, f)))).toBe(f.sha256);
      // No staging object is left.
      expect((await keys(t.store)).filter((k) => k.startsWith('staging/'))).toEqual([]);

      // The same files again (any order) are the same version.
      const again = await registry.registerBundle(
        model,
        [...bundle.files].reverse().map((f) => ({ name: f.name, body: asStream(f.bytes) })),
      );
      expect(again.created).toBe(false);
      expect(again.version.version).toBe(version.version);
    },
  );

  it('a bundle of the graph alone registers like registerVersion, and dedupes with it', async () => {
    const single = buildBundle().mlp.bytes;
    const { version } = await registry.registerBundle('alone', [
      { name: 'net.onnx', body: asStream(single) },
    ]);
    expect(version.files).toBeUndefined();
    expect(version.sha256).toBe(sha(single));
    expect(version.blobKey).toBe(`blobs/sha256/${sha(single)}.onnx`);
    const again = await registry.registerVersion('alone', asStream(single));
    expect(again).toMatchObject({ created: false, version: { version: version.version } });
  });

  it('reads storeKey sources and copies them, leaving the caller’s objects alone', async () => {
    const bundle = buildBundle({ layout: 'per-tensor', mlp: { seed: 11 } });
    const sources: BundleSource[] = [];
    for (const f of bundle.files) {
      await t.store.put(`uploads/x/${f.name}`, f.bytes);
      sources.push({ name: f.name, storeKey: `uploads/x/${f.name}`, size: f.bytes.length });
    }
    const { version } = await registry.registerBundle('from-uploads', sources);
    for (const f of version.files!) expect((await t.store.head(f.blobKey)).size).toBe(f.size);
    for (const s of sources) await t.store.head(s.storeKey!); // still there: the caller deletes them
  });

  it('a storeKey source replaced after it was read is not registered (409)', async () => {
    const bundle = buildBundle({ mlp: { seed: 13 } });
    for (const f of bundle.files) await t.store.put(`uploads/y/${f.name}`, f.bytes);
    // The real store, except that the data file is overwritten just before it is copied.
    const racing: ObjectStore = Object.create(t.store);
    racing.copy = async (from, to, options) => {
      if (from.endsWith('.data')) await t.store.put(from, Buffer.alloc(bundle.files[1]!.bytes.length, 7));
      return t.store.copy(from, to, options);
    };
    const error = await new ModelRegistry(racing)
      .registerBundle(
        'raced',
        bundle.files.map((f) => ({ name: f.name, storeKey: `uploads/y/${f.name}` })),
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as Error).message).toMatch(/changed while it was being registered/);
    expect(await registry.getLatestVersionNumber('raced')).toBe(0);
  });

  it('a tampered data file is caught by verified reads', async () => {
    const bundle = buildBundle({ mlp: { seed: 12 } });
    const { version } = await registry.registerBundle(
      'tampered',
      bundle.files.map((f) => ({ name: f.name, body: f.bytes })),
    );
    const data = version.files![1]!;
    const bytes = Buffer.from((await t.store.get(data.blobKey)).body);
    bytes[10]! ^= 1;
    await t.store.put(data.blobKey, bytes);
    await expect(registry.verifyModel(version)).rejects.toThrow(/integrity check/);
    await expect(readAll(await registry.openFile(version, data))).rejects.toThrow(/integrity check/);
  });
});

describe.each(storeKinds)('malicious bundles are refused with nothing stored (%s store)', (kind) => {
  let t: TestStore;
  let registry: ModelRegistry;
  const bundle = buildBundle({ align: 64, mlp: { seed: 21 } });
  const graph = bundle.files[0]!;
  const data = bundle.files[1]!;
  beforeAll(async () => {
    t = await createTestStore(kind, 'badbundle');
    registry = new ModelRegistry(t.store, { inMemoryBytes: 256, maxModelBytes: 64 * 1024 });
  });
  afterAll(() => t.cleanup());

  const withGraph = (edit: Parameters<typeof editedGraph>[1]): BundleSource[] => [
    { name: 'model.onnx', body: asStream(editedGraph(bundle, edit)) },
    { name: data.name, body: asStream(data.bytes) },
  ];
  const cases: [string, () => BundleSource[], new (...a: never[]) => Error, RegExp][] = [
    [
      'a traversing location',
      () => withGraph((m) => (m.graph!.initializer[0]!.externalData[0]!.value = '../model.onnx.data')),
      UnprocessableError,
      /tensor "fc0.weight".*"..\/model.onnx.data" is not a plain file name/,
    ],
    [
      'an absolute location',
      () => withGraph((m) => (m.graph!.initializer[0]!.externalData[0]!.value = '/etc/passwd')),
      UnprocessableError,
      /tensor "fc0.weight".*not a plain file name/,
    ],
    [
      'a missing data file',
      () => [
        { name: 'model.onnx', body: graph.bytes },
        { name: 'other.bin', body: data.bytes },
      ],
      UnprocessableError,
      /"model.onnx.data" is not a file of the bundle/,
    ],
    [
      'an offset outside the file',
      () => withGraph((m) => (m.graph!.initializer[1]!.externalData[1]!.value = '999999')),
      UnprocessableError,
      /tensor "fc0.bias".*lies outside/,
    ],
    [
      'a duplicate file name',
      () => [
        { name: 'model.onnx', body: graph.bytes },
        { name: data.name, body: data.bytes },
        { name: data.name, body: asStream(data.bytes) },
      ],
      InvalidArgumentError,
      /appears twice/,
    ],
    [
      'names differing in case',
      () => [
        { name: 'model.onnx', body: graph.bytes },
        { name: data.name, body: data.bytes },
        { name: data.name.toUpperCase(), body: data.bytes },
      ],
      InvalidArgumentError,
      /differ only in case/,
    ],
    [
      'a file name with a separator',
      () => [
        { name: 'model.onnx', body: graph.bytes },
        { name: 'sub/model.onnx.data', body: asStream(data.bytes) },
      ],
      InvalidArgumentError,
      /path separator/,
    ],
    [
      'a file name with ..',
      () => [{ name: '..', body: data.bytes }],
      InvalidArgumentError,
      /relative path component/,
    ],
    [
      'two graphs',
      () => [
        { name: 'model.onnx', body: graph.bytes },
        { name: 'b.onnx', body: asStream(graph.bytes) },
      ],
      InvalidArgumentError,
      /exactly one .onnx/,
    ],
    [
      'no graph',
      () => [{ name: data.name, body: asStream(data.bytes) }],
      InvalidArgumentError,
      /needs one .onnx graph/,
    ],
    [
      'an unreferenced extra file',
      () => [
        ...bundle.files.map((f) => ({ name: f.name, body: f.bytes })),
        { name: 'extra.bin', body: asStream(data.bytes) },
      ],
      UnprocessableError,
      /"extra.bin" is not referenced/,
    ],
    [
      'a wrong announced size',
      () => [
        { name: 'model.onnx', body: graph.bytes },
        { name: data.name, body: asStream(data.bytes), size: data.bytes.length + 1 },
      ],
      InvalidArgumentError,
      /not the \d+ announced/,
    ],
    [
      'a total over the limit',
      () => [
        { name: 'model.onnx', body: graph.bytes },
        { name: data.name, body: asStream(Buffer.alloc(70 * 1024)) },
      ],
      PayloadTooLargeError,
      /larger than the limit/,
    ],
    [
      'a graph that is not ONNX',
      () => [
        { name: 'model.onnx', body: asStream(Buffer.from('not a model at all, just text '.repeat(40))) },
        { name: data.name, body: data.bytes },
      ],
      UnprocessableError,
      /not a valid ONNX model/,
    ],
  ];

  it.each(cases)('%s', async (_label, sources, type, message) => {
    const error = await registry.registerBundle('bad', sources()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(type);
    expect((error as Error).message).toMatch(message);
    expect(await keys(t.store)).toEqual([]);
    if (t.store instanceof S3ObjectStore) {
      // An aborted staging upload leaves no multipart upload behind either.
      const pending = await t.store.client.send(new ListMultipartUploadsCommand({ Bucket: t.store.bucket }));
      expect(pending.Uploads ?? []).toEqual([]);
    }
  });
});

/**
 * A single-file ONNX model of `payloadBytes` written straight to disk (one big initializer,
 * streamed in 1 MiB chunks), so the test process never holds it: y = x + w.
 */
async function writeBigModel(file: string, payloadBytes: number): Promise<void> {
  const elements = payloadBytes / 4;
  const graph = makeGraph({
    name: 'big',
    nodes: [makeNode('Add', ['x', 'w'], ['y'])],
    inputs: [makeValueInfo('x', 'FP32', [elements])],
    outputs: [makeValueInfo('y', 'FP32', [elements])],
  });
  const header = makeModel(graph);
  header.graph = undefined;
  const tensor = tensorFromFloat32('w', [1], new Float32Array(1));
  tensor.dims = [BigInt(elements)];
  tensor.rawData = new Uint8Array();
  const varint = (n: number): number[] => {
    const out: number[] = [];
    for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
    out.push(n);
    return out;
  };
  const tensorHead = Buffer.concat([
    toBinary(TensorProtoSchema, tensor),
    Buffer.from([(9 << 3) | 2, ...varint(payloadBytes)]),
  ]);
  const initializer = Buffer.concat([
    Buffer.from([(5 << 3) | 2, ...varint(tensorHead.length + payloadBytes)]),
    tensorHead,
  ]);
  const graphBytes = toBinary(GraphProtoSchema, graph);
  const graphLength = graphBytes.length + initializer.length + payloadBytes;
  const out = await open(file, 'w');
  try {
    await out.write(
      Buffer.concat([
        encodeModel(header),
        Buffer.from([(7 << 3) | 2, ...varint(graphLength)]),
        graphBytes,
        initializer,
      ]),
    );
    const chunk = Buffer.alloc(1024 * 1024);
    for (let left = payloadBytes; left > 0; left -= chunk.length) {
      chunk.fill(left % 251);
      await out.write(chunk, 0, Math.min(chunk.length, left));
    }
  } finally {
    await out.close();
  }
}

describe('graph size', () => {
  it('a graph announced above 2 GiB is refused before it is read, whatever the model limit', async () => {
    const t = await createTestStore('file', 'biggraph');
    try {
      const registry = new ModelRegistry(t.store, { maxModelBytes: 8 * 1024 ** 3 });
      const body = Readable.from([Buffer.alloc(10)]);
      const error = await registry
        .registerBundle('huge', [{ name: 'model.onnx', body, size: 2 ** 31 }])
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PayloadTooLargeError);
      expect((error as Error).message).toMatch(/larger than an ONNX file can be .*external data/);
      expect(body.destroyed).toBe(true);
      expect(await keys(t.store)).toEqual([]);
    } finally {
      await t.cleanup();
    }
  });
});

describe('registration memory does not follow the model size', () => {
  it('registers a ~300 MB single-file model from a stream with a bounded RSS growth (file store)', async () => {
    const t = await createTestStore('file', 'bigmodel');
    const dir = await mkdtemp(path.join(tmpdir(), 'bigmodel-src-'));
    try {
      const file = path.join(dir, 'big.onnx');
      const payload = 300 * 1024 * 1024;
      await writeBigModel(file, payload);
      const size = (await stat(file)).size;
      const registry = new ModelRegistry(t.store, { maxModelBytes: 1024 ** 3 });
      global.gc?.();
      const baseline = process.memoryUsage().rss;
      let peak = baseline;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 10);
      const started = Date.now();
      const { version } = await registry.registerVersion('big', createReadStream(file));
      clearInterval(sampler);
      peak = Math.max(peak, process.memoryUsage().rss);
      const growthMb = (peak - baseline) / 1024 / 1024;
      console.log(
        `registered ${(size / 1e6).toFixed(0)} MB in ${Date.now() - started} ms; RSS growth ${growthMb.toFixed(1)} MB`,
      );
      expect(version.size).toBe(size);
      expect(version.onnx.initializerBytes).toBe(payload);
      expect(version.onnx.parameterCount).toBe(payload / 4);
      expect((await t.store.head(version.blobKey)).size).toBe(size);
      // Buffering the model would grow RSS by at least its 300 MB.
      expect(growthMb).toBeLessThan(100);
      expect((await keys(t.store)).filter((k) => k.startsWith('staging/'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await t.cleanup();
    }
  }, 120_000);
});
