/**
 * Bundles (an ONNX graph plus external data files) served through the predict handler on RGW:
 * laid out in a private per-version folder, downloaded with parallel ranged GETs verified while
 * they stream, loaded from the graph's path; tampering is never served, a model too big for the
 * function's memory is refused before anything is downloaded, and old copies leave the disk when
 * it runs short.
 */
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BuiltMlp, buildMlp, mlpReference, mulberry32, randomFloat32 } from '../../dev/onnx-builder';
import { forgetVerifiedCopies } from '../../shared/inference';
import type { ModelVersion } from '../../shared/registry';
import { storeTestBundle, toBundle } from '../support/bundles';
import { countingStore } from '../support/counting-store';
import { bodyJson, inferEvent, invoke, type PredictFixture, predictFixture } from './support';

let fx: PredictFixture;
const INPUT = 16;

function mlpOf(seed: number, hidden = 64): BuiltMlp {
  return buildMlp({ inputSize: INPUT, hiddenSizes: [hidden], outputSize: 4, seed });
}

async function storeBundle(
  name: string,
  mlp: BuiltMlp,
  layout: 'single' | 'per-tensor',
): Promise<ModelVersion> {
  // toBundle rewrites the message: a fresh copy.
  return storeTestBundle(fx.store, name, toBundle(structuredClone(mlp.model), layout));
}

async function inferOk(name: string, mlp: BuiltMlp, seed = 1): Promise<void> {
  const x = randomFloat32(mulberry32(seed), 2 * INPUT, -1, 1);
  const res = await invoke(
    inferEvent(name, { inputs: [{ name: 'input', shape: [2, INPUT], datatype: 'FP32', data: [...x] }] }),
  );
  expect(res.statusCode, res.body).toBe(200);
  const out = (bodyJson(res).outputs as { data: number[] }[])[0]?.data ?? [];
  const expected = mlpReference(mlp.weights, x, 2);
  expect(out.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(out[i]).toBeCloseTo(expected[i] ?? NaN, 4);
}

async function inferStatus(name: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const x = randomFloat32(mulberry32(3), INPUT, -1, 1);
  const res = await invoke(
    inferEvent(name, { inputs: [{ name: 'input', shape: [1, INPUT], datatype: 'FP32', data: [...x] }] }),
  );
  return { status: res.statusCode ?? 0, body: bodyJson(res) };
}

async function cacheListing(): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(fx.cacheDir)) {
    const full = path.join(fx.cacheDir, name);
    if ((await stat(full)).isDirectory())
      for (const inner of await readdir(full)) out.push(`${name}/${inner}`);
    else out.push(name);
  }
  return out.sort();
}

beforeAll(async () => {
  fx = await predictFixture();
});
afterAll(async () => {
  await fx.cleanup();
});

describe('bundles through the predict handler', () => {
  it('serves a bundle with one data file from its private folder; outputs equal the reference', async () => {
    const mlp = mlpOf(11);
    const version = await storeBundle('one-data', mlp, 'single');
    await inferOk('one-data', mlp);
    expect(await cacheListing()).toEqual([
      `${version.sha256}.bundle/model.onnx`,
      `${version.sha256}.bundle/model.onnx.data`,
    ]);
    // The files on disk are the stored bytes.
    const data = version.files?.find((f) => f.name === 'model.onnx.data');
    const local = await readFile(path.join(fx.cacheDir, `${version.sha256}.bundle`, 'model.onnx.data'));
    expect(local.length).toBe(data?.size);
  });

  it('downloads one file per tensor in parallel ranged parts (each part one GET) and serves it', async () => {
    const counted = countingStore(fx.store);
    const partBytes = 4096;
    await fx.reinstall({ materialize: { partBytes, concurrency: 3 } }, counted.store);
    const mlp = mlpOf(12, 96);
    const version = await storeBundle('per-tensor', mlp, 'per-tensor');
    expect(version.files?.length).toBe(5); // graph + 2 weights + 2 biases
    counted.reset();
    await inferOk('per-tensor', mlp);
    const ranged = counted.calls.filter((c) => c.startsWith('getRange '));
    const expectedParts = (version.files ?? []).reduce((n, f) => n + Math.ceil(f.size / partBytes), 0);
    expect(ranged.length).toBe(expectedParts);
    expect(expectedParts).toBeGreaterThan(version.files?.length ?? 0);
    // Warm: no store request for the bytes again.
    counted.reset();
    await inferOk('per-tensor', mlp, 2);
    expect(counted.calls.filter((c) => c.startsWith('getRange '))).toEqual([]);
    await fx.reinstall();
  });

  it('a data blob tampered with after registration is never served, and nothing of it stays on disk', async () => {
    await fx.reinstall();
    const mlp = mlpOf(13);
    const version = await storeBundle('tampered', mlp, 'single');
    const data = version.files?.find((f) => f.role === 'data');
    if (!data) throw new Error('no data file');
    const stored = (await fx.store.get(data.blobKey)).body;
    const evil = Buffer.from(stored);
    evil[evil.length - 1] = (evil[evil.length - 1] ?? 0) ^ 0xff; // same size, one bit pattern off
    await fx.store.put(data.blobKey, evil);
    for (let i = 0; i < 2; i++) {
      const { status, body } = await inferStatus('tampered');
      expect(status).toBe(500);
      expect(body.code).toBe('integrity_error');
    }
    expect(fx.metrics.sum('ModelIntegrityFailures', { model: 'tampered', version: '1' })).toBe(2);
    const left = (await cacheListing()).filter((f) => f.startsWith(`${version.sha256}.bundle/`));
    // At most the graph (it is intact) stays; the data file never appears, not even as a temp file.
    expect(left.filter((f) => f !== `${version.sha256}.bundle/model.onnx`)).toEqual([]);
    // A truncated blob is refused the same way.
    await fx.store.put(data.blobKey, stored.subarray(0, stored.length - 100));
    expect((await inferStatus('tampered')).body.code).toBe('integrity_error');
  });

  it('an evicted local copy is verified again before reuse: a damaged one is fetched anew', async () => {
    await fx.reinstall();
    const mlp = mlpOf(14);
    const version = await storeBundle('recheck', mlp, 'single');
    await inferOk('recheck', mlp);
    const local = path.join(fx.cacheDir, `${version.sha256}.bundle`, 'model.onnx.data');
    // A new container sharing /tmp: the sessions are gone, the copies stay, nothing is trusted.
    await fx.reinstall();
    forgetVerifiedCopies();
    const bytes = await readFile(local);
    bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    await writeFile(local, bytes);
    const counted = countingStore(fx.store);
    await fx.reinstall({}, counted.store);
    await inferOk('recheck', mlp);
    // Only the damaged file came from the store again; the graph's copy checked out.
    const ranged = counted.calls.filter((c) => c.startsWith('getRange '));
    const dataKey = version.files?.find((f) => f.role === 'data')?.blobKey;
    expect(ranged.length).toBeGreaterThan(0);
    expect(ranged.every((c) => c === `getRange ${dataKey}`)).toBe(true);
    await fx.reinstall();
  });

  it('a model too big for the function memory gets a 413 naming the memory it needs, before any download', async () => {
    const mib = 1024 * 1024;
    const counted = countingStore(fx.store);
    const mlp = mlpOf(15, 4096); // ~330 KB of initializers: ~0.7 MiB estimated
    const version = await storeBundle('too-big', mlp, 'single');
    await fx.reinstall(
      { memory: { limitBytes: 1.5 * mib, reservedBytes: mib }, session: { smallModelBytes: 0 } },
      counted.store,
    );
    counted.reset();
    const { status, body } = await inferStatus('too-big');
    expect(status).toBe(413);
    expect(body.code).toBe('too_large');
    expect(String(body.error)).toMatch(
      /needs about \d+ MiB of memory.*at least \d+ MB of memory \(stack param predictMemoryMb/,
    );
    expect(counted.calls.filter((c) => c.startsWith('getRange ') || c.startsWith('getStream '))).toEqual([]);
    expect((await cacheListing()).some((f) => f.startsWith(`${version.sha256}.bundle`))).toBe(false);
    // With the memory it asks for, the same model serves.
    const needed = Number(/at least (\d+) MB/.exec(String(body.error))?.[1]);
    await fx.reinstall({
      memory: { limitBytes: needed * mib, reservedBytes: mib },
      session: { smallModelBytes: 0 },
    });
    await inferOk('too-big', mlp);
    await fx.reinstall();
  });

  it('evicts the least recently used copy from disk when the cache is full, and re-downloads it when needed', async () => {
    const a = mlpOf(16, 256);
    const b = mlpOf(17, 256);
    const va = await storeBundle('disk-a', a, 'single');
    const vb = await storeBundle('disk-b', b, 'single');
    await fx.reinstall({ materialize: { diskBytes: Math.floor(va.size * 1.5), diskReserveBytes: 0 } });
    const folders = async (): Promise<string[]> =>
      (await readdir(fx.cacheDir)).filter((n) => n === `${va.sha256}.bundle` || n === `${vb.sha256}.bundle`);
    await inferOk('disk-a', a);
    expect(await folders()).toEqual([`${va.sha256}.bundle`]);
    await inferOk('disk-b', b);
    expect(await folders()).toEqual([`${vb.sha256}.bundle`]);
    // A's session went with its files; it comes back from the store, evicting B's.
    await inferOk('disk-a', a, 5);
    expect(await folders()).toEqual([`${va.sha256}.bundle`]);
    await fx.reinstall();
  });

  it('a big single-file model downloads in ranged parts to {sha256}.onnx and loads from it; tampered, it is refused', async () => {
    const counted = countingStore(fx.store);
    await fx.reinstall({ materialize: { fileMinBytes: 1, partBytes: 16 * 1024 } }, counted.store);
    const mlp = mlpOf(18, 256);
    const { version } = await fx.registry.registerVersion('big-single', mlp.bytes);
    counted.reset();
    await inferOk('big-single', mlp);
    const ranged = counted.calls.filter((c) => c === `getRange ${version.blobKey}`);
    expect(ranged.length).toBe(Math.ceil(version.size / (16 * 1024)));
    expect(counted.calls.filter((c) => c.startsWith('getStream '))).toEqual([]);
    expect(await readFile(path.join(fx.cacheDir, `${version.sha256}.onnx`))).toEqual(Buffer.from(mlp.bytes));
    // Tampered in the store, with no local copy left: refused, and no copy appears.
    await fx.reinstall({ materialize: { fileMinBytes: 1, partBytes: 16 * 1024 } });
    await rm(path.join(fx.cacheDir, `${version.sha256}.onnx`));
    const evil = Buffer.from(mlp.bytes);
    evil[evil.length - 10] = (evil[evil.length - 10] ?? 0) ^ 0x01;
    await fx.store.put(version.blobKey, evil);
    expect((await inferStatus('big-single')).body.code).toBe('integrity_error');
    expect((await readdir(fx.cacheDir)).filter((n) => n.startsWith(version.sha256))).toEqual([]);
    await fx.reinstall();
  });

  it('keeps at most `concurrency` ranged GETs in flight (download memory is bounded), and uses them', async () => {
    let inFlight = 0;
    let peak = 0;
    // Every other call goes to the real store (prototype delegation keeps its methods).
    const store = Object.create(fx.store) as typeof fx.store;
    store.getRange = async (key, start, end) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      try {
        const got = await fx.store.getRange(key, start, end);
        // The part is in flight until its bytes are read.
        got.body.once('close', () => inFlight--);
        return got;
      } catch (e) {
        inFlight--;
        throw e;
      }
    };
    await fx.reinstall({ materialize: { partBytes: 4096, concurrency: 3 } }, store);
    const mlp = mlpOf(19, 128);
    await storeBundle('bounded', mlp, 'per-tensor');
    await inferOk('bounded', mlp);
    expect(peak).toBeLessThanOrEqual(3);
    expect(peak).toBeGreaterThan(1);
    await fx.reinstall();
  });

  it('a manifest naming a file outside its folder is refused, and nothing is written outside the cache', async () => {
    await fx.reinstall();
    const mlp = mlpOf(20);
    const version = await storeBundle('escape', mlp, 'single');
    const key = `models/escape/versions/000000001.json`;
    const manifest = JSON.parse((await fx.store.get(key)).body.toString()) as ModelVersion;
    manifest.files![1]!.name = '../escaped.data';
    await fx.store.put(key, JSON.stringify(manifest), { contentType: 'application/json' });
    const { status } = await inferStatus('escape');
    expect(status).toBe(500);
    // '../escaped.data' from the bundle folder would land in the cache folder itself.
    expect(await readdir(fx.cacheDir)).not.toContain('escaped.data');
    expect(await readdir(path.dirname(fx.cacheDir))).not.toContain('escaped.data');
    expect((await readdir(fx.cacheDir)).filter((n) => n.startsWith(version.sha256))).toEqual([]);
  });

  it('a 35 MB data file (over the worker-hashing threshold) is served; tampered, refused', async () => {
    await fx.reinstall();
    const mlp = mlpOf(21, 440_000); // 16×440000 + 440000×4 floats ≈ 35 MB of weights
    const version = await storeBundle('worker-hash', mlp, 'single');
    expect(version.files?.[1]?.size).toBeGreaterThan(32 * 1024 * 1024);
    await inferOk('worker-hash', mlp);
    const data = version.files!.find((f) => f.role === 'data')!;
    const evil = Buffer.from((await fx.store.get(data.blobKey)).body);
    evil[20 * 1024 * 1024] = (evil[20 * 1024 * 1024] ?? 0) ^ 0x10;
    await fx.store.put(data.blobKey, evil);
    await fx.reinstall();
    await rm(path.join(fx.cacheDir, `${version.sha256}.bundle`), { recursive: true, force: true });
    expect((await inferStatus('worker-hash')).body.code).toBe('integrity_error');
    await fx.reinstall();
  });
});
