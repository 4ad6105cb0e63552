/**
 * Bundles (graph + external data files) written by shared/onnx/external-data.ts: onnx's checker
 * accepts them, onnxruntime loads them from a folder and computes what the inline model computes,
 * reading them back restores the inline model, and bad locations / ranges are refused.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { TensorProto_DataLocation } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp, mlpReference, mulberry32, randomFloat32 } from '../../dev/onnx-builder';
import { decodeModel, encodeModel } from '../../shared/onnx/codec';
import {
  type ExternalDataBundle,
  externalDataRefs,
  hasExternalData,
  resolveExternalData,
  writeExternalData,
} from '../../shared/onnx/external-data';
import { parseOptimizeRequest } from '../../shared/optimize';
import { optimizeVersion } from '../../shared/optimize/optimizer';
import { openParentModel } from '../../shared/optimize/parent';
import { ModelRegistry } from '../../shared/registry';
import { createTestStore, type TestStore } from '../support/stores';
import { ensureOnnxChecker, onnxCheckerErrors } from './onnx-checker';

const PYTHON = '/usr/bin/python3';
const dirs: string[] = [];

/** onnx.checker.check_model on a path (it follows external data relative to the graph's folder). */
function checkPath(file: string): string {
  const r = spawnSync(PYTHON, ['-c', 'import onnx, sys; onnx.checker.check_model(sys.argv[1])', file], {
    encoding: 'utf8',
  });
  return r.status === 0 ? '' : (r.stderr.trim().split('\n').at(-1) ?? `exit ${r.status}`);
}

function writeBundle(bundle: ExternalDataBundle): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'maas-bundle-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'model.onnx'), bundle.graph);
  for (const f of bundle.files) writeFileSync(path.join(dir, f.name), Buffer.concat(f.chunks));
  return dir;
}

async function readRange(dir: string, location: string, offset: number, length: number): Promise<Uint8Array> {
  const fh = await open(path.join(dir, location), 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function sizesOf(bundle: ExternalDataBundle): Map<string, number> {
  return new Map(bundle.files.map((f) => [f.name, f.size]));
}

async function run(source: string | Uint8Array, input: Float32Array, shape: number[]): Promise<Float32Array> {
  const session =
    typeof source === 'string'
      ? await ort.InferenceSession.create(source)
      : await ort.InferenceSession.create(source);
  try {
    const out = await session.run({ input: new ort.Tensor('float32', input, shape) });
    return out.output?.data as Float32Array;
  } finally {
    await session.release();
  }
}

const mlp = buildMlp({ inputSize: 64, hiddenSizes: [96], outputSize: 8, seed: 7 });
const input = randomFloat32(mulberry32(3), 2 * 64, -1, 1);

beforeAll(() => ensureOnnxChecker(), 300_000);
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('writeExternalData', () => {
  for (const layout of ['single', 'per-tensor'] as const) {
    it(`${layout}: checker accepts it, onnxruntime from the folder equals the inline model, read back restores it`, async () => {
      const bundle = writeExternalData(mlp.model, { layout });
      // fc0.weight (24 KiB) and fc1.weight (3 KiB) go external; the biases (384 B, 32 B) stay inline.
      expect(bundle.files.length).toBe(layout === 'single' ? 1 : 2);
      const graphModel = decodeModel(bundle.graph);
      expect(hasExternalData(graphModel)).toBe(true);
      expect(hasExternalData(mlp.model)).toBe(false); // input untouched
      expect(bundle.graph.byteLength).toBeLessThan(mlp.bytes.byteLength / 10);
      if (layout === 'single') {
        for (const r of externalDataRefs(graphModel, sizesOf(bundle))) expect(r.offset % 4096).toBe(0);
      }
      const dir = writeBundle(bundle);
      expect(checkPath(path.join(dir, 'model.onnx'))).toBe('');
      const fromFolder = await run(path.join(dir, 'model.onnx'), input, [2, 64]);
      const inline = await run(mlp.bytes, input, [2, 64]);
      expect(Array.from(fromFolder)).toEqual(Array.from(inline));
      const expected = mlpReference(mlp.weights, input, 2);
      for (let i = 0; i < expected.length; i++) expect(fromFolder[i]).toBeCloseTo(expected[i] ?? 0, 4);

      await resolveExternalData(graphModel, sizesOf(bundle), (loc, off, len) =>
        readRange(dir, loc, off, len),
      );
      expect(hasExternalData(graphModel)).toBe(false);
      expect(Buffer.from(encodeModel(graphModel)).equals(Buffer.from(mlp.bytes))).toBe(true);
    });
  }

  it('keeps tensors under the threshold inline', () => {
    const bundle = writeExternalData(mlp.model, { layout: 'per-tensor', sizeThreshold: 1_000_000 });
    expect(bundle.files).toEqual([]);
    expect(hasExternalData(decodeModel(bundle.graph))).toBe(false);
  });
});

describe('resolveExternalData refuses bad references', () => {
  const bundle = writeExternalData(mlp.model, { layout: 'single' });
  const sizes = sizesOf(bundle);
  const cases: [string, (entries: Map<string, string>) => void, RegExp][] = [
    ['../x', (e) => e.set('location', '../x'), /location "\.\.\/x" is not a plain file name of the bundle/],
    ['/etc/passwd', (e) => e.set('location', '/etc/passwd'), /not a plain file name/],
    ['C:x', (e) => e.set('location', 'C:x'), /not a plain file name/],
    ['a\\b', (e) => e.set('location', 'a\\b'), /not a plain file name/],
    ['NUL', (e) => e.set('location', 'a\u0000b'), /not a plain file name/],
    ['missing file', (e) => e.set('location', 'other.bin'), /"other.bin" is not in the bundle/],
    ['no location', (e) => e.delete('location'), /has no location/],
    ['range past end', (e) => e.set('offset', String(sizes.get('model.onnx.data') ?? 0)), /lies outside/],
    ['negative offset', (e) => e.set('offset', '-1'), /offset "-1" is not a non-negative integer/],
    ['bad length', (e) => e.set('length', '1e9'), /length "1e9" is not/],
  ];
  for (const [label, edit, message] of cases) {
    it(label, async () => {
      const model = decodeModel(bundle.graph);
      const t = model.graph?.initializer.find((x) => x.dataLocation === TensorProto_DataLocation.EXTERNAL);
      if (!t) throw new Error('no external tensor');
      const entries = new Map(t.externalData.map((e) => [e.key, e.value]));
      edit(entries);
      t.externalData = t.externalData.filter((e) => entries.has(e.key));
      for (const e of t.externalData) e.value = entries.get(e.key) ?? '';
      let reads = 0;
      await expect(
        resolveExternalData(model, sizes, async () => {
          reads++;
          return new Uint8Array(0);
        }),
      ).rejects.toThrow(new RegExp(`tensor "${t.name}": .*${message.source}`));
      expect(reads).toBe(0); // refused before anything is read
    });
  }
});

/**
 * Random inputs to a random 16-way MLP have near-ties in the top class (cosine stays strict); the
 * latency verdict is not what these tests check, and 2 iterations on shared cores are noise.
 */
const TOLERANCES = { minTop1Agreement: 0.95, maxSlowdown: 100 };

describe('optimize int8 and fp16 of a bundle parent (file store)', () => {
  let t: TestStore;
  let registry: ModelRegistry;
  // Big enough that int8 pays off and the gate's size check is meaningful.
  const big = buildMlp({ inputSize: 128, hiddenSizes: [256], outputSize: 16, seed: 21 });
  const x = randomFloat32(mulberry32(5), 4 * 128, -1, 1);
  beforeAll(async () => {
    t = await createTestStore('file', 'optimize-bundles');
    registry = new ModelRegistry(t.store);
  });
  afterAll(() => t.cleanup());

  for (const layout of ['single', 'per-tensor'] as const) {
    it(`${layout}: the int8 candidate is one file that passes onnx.checker, runs, and stays close to the parent`, async () => {
      const bundle = writeExternalData(big.model, { layout });
      const name = `mlp-${layout}`;
      const { version: parent } = await registry.registerBundle(name, [
        { name: 'model.onnx', body: bundle.graph },
        ...bundle.files.map((f) => ({ name: f.name, body: Buffer.concat(f.chunks) })),
      ]);
      expect(parent.files?.length).toBe(1 + bundle.files.length);
      // The parent laid out from its verified files decodes to the inline model, byte for byte.
      const opened = await openParentModel(registry, parent);
      try {
        expect(Buffer.from(encodeModel(await opened.decode())).equals(Buffer.from(big.bytes))).toBe(true);
      } finally {
        await opened.dispose();
      }

      const report = await optimizeVersion(
        registry,
        name,
        parent.version,
        parseOptimizeRequest({ techniques: ['int8'], tolerances: TOLERANCES }),
        { store: t.store, evaluate: { iterations: 2, loadRuns: 1 } },
      );
      const c = report.candidates[0];
      expect(c?.error).toBeUndefined();
      expect(c?.gate?.reasons).toEqual([]);
      expect(c?.status).toBe('registered');
      const candidate = await registry.getVersion(name, c?.version ?? -1);
      expect(candidate.files).toBeUndefined(); // under 2 GiB: a single file
      expect(candidate.parentVersion).toBe(parent.version);
      const bytes = new Uint8Array(await registry.readModel(candidate));
      expect(bytes.byteLength).toBeLessThan(big.bytes.byteLength / 2);
      expect(onnxCheckerErrors(bytes)).toBe('');
      const got = await run(bytes, x, [4, 128]);
      const want = mlpReference(big.weights, x, 4);
      let maxErr = 0;
      let maxRef = 0;
      for (let i = 0; i < want.length; i++) {
        maxErr = Math.max(maxErr, Math.abs((got[i] ?? 0) - (want[i] ?? 0)));
        maxRef = Math.max(maxRef, Math.abs(want[i] ?? 0));
      }
      expect(maxErr).toBeLessThan(0.05 * maxRef);
      expect(maxErr).toBeGreaterThan(0); // really quantized, not a copy of the parent
    });
  }

  it('fp16 of a per-tensor bundle: one file that passes onnx.checker and stays close to the parent', async () => {
    const bundle = writeExternalData(big.model, { layout: 'per-tensor' });
    const { version: parent } = await registry.registerBundle('mlp-fp16', [
      { name: 'model.onnx', body: bundle.graph },
      ...bundle.files.map((f) => ({ name: f.name, body: Buffer.concat(f.chunks) })),
    ]);
    const report = await optimizeVersion(
      registry,
      'mlp-fp16',
      parent.version,
      parseOptimizeRequest({ techniques: ['fp16'], tolerances: TOLERANCES }),
      { store: t.store, evaluate: { iterations: 2, loadRuns: 1 } },
    );
    const c = report.candidates[0];
    expect(c?.error).toBeUndefined();
    expect(c?.gate?.reasons).toEqual([]);
    const candidate = await registry.getVersion('mlp-fp16', c?.version ?? -1);
    expect(candidate.files).toBeUndefined();
    const bytes = new Uint8Array(await registry.readModel(candidate));
    expect(bytes.byteLength).toBeLessThan(big.bytes.byteLength * 0.6);
    expect(onnxCheckerErrors(bytes)).toBe('');
    const got = await run(bytes, x, [4, 128]);
    const want = mlpReference(big.weights, x, 4);
    for (let i = 0; i < want.length; i++) expect(Math.abs((got[i] ?? 0) - (want[i] ?? 0))).toBeLessThan(0.01);
  });

  it('a candidate over the inline limit is written and registered as a bundle (graph + one data file), nothing left on disk', async () => {
    const bundle = writeExternalData(big.model, { layout: 'per-tensor' });
    const { version: parent } = await registry.registerBundle('mlp-over-limit', [
      { name: 'model.onnx', body: bundle.graph },
      ...bundle.files.map((f) => ({ name: f.name, body: Buffer.concat(f.chunks) })),
    ]);
    const workDir = mkdtempSync(path.join(tmpdir(), 'maas-optimize-work-'));
    dirs.push(workDir);
    // The 2 GiB limit, scaled down: the same code path a 5 GB parent's fp16 takes.
    const report = await optimizeVersion(
      registry,
      'mlp-over-limit',
      parent.version,
      parseOptimizeRequest({ techniques: ['fp16', 'int8'], tolerances: TOLERANCES }),
      { store: t.store, evaluate: { iterations: 2, loadRuns: 1 }, inlineLimitBytes: 1024, workDir },
    );
    expect(readdirSync(workDir)).toEqual([]); // parent folder and candidate folders removed
    for (const c of report.candidates) {
      expect(c.error).toBeUndefined();
      expect(c.status).toBe('registered');
      const candidate = await registry.getVersion('mlp-over-limit', c.version ?? -1);
      expect(candidate.files?.map((f) => [f.name, f.role])).toEqual([
        ['model.onnx', 'graph'],
        ['model.onnx.data', 'data'],
      ]);
      const graph = candidate.files?.find((f) => f.role === 'graph');
      const data = candidate.files?.find((f) => f.role === 'data');
      expect((graph?.size ?? 0) + (data?.size ?? 0)).toBe(candidate.size);
      expect(graph?.size ?? Infinity).toBeLessThan(4096); // the weights are external
      expect(data?.size ?? 0).toBeGreaterThan(10 * (graph?.size ?? 0));
      // The size ratio the gate saw is the files' (fp16 about 1/2, int8 about 1/4 of the parent).
      expect(c.evaluation?.size.candidate).toBe(candidate.size);
      expect(c.evaluation?.size.parent).toBe(parent.size);
      const opened = await openParentModel(registry, candidate);
      try {
        if (opened.artifact instanceof Uint8Array) throw new Error('expected a folder');
        const file = path.join(opened.artifact.dir, opened.artifact.graph);
        expect(checkPath(file)).toBe('');
        const got = await run(file, x, [4, 128]);
        const want = mlpReference(big.weights, x, 4);
        const maxRef = Math.max(...want.map(Math.abs));
        for (let i = 0; i < want.length; i++)
          expect(Math.abs((got[i] ?? 0) - (want[i] ?? 0))).toBeLessThan(0.05 * maxRef);
      } finally {
        await opened.dispose();
      }
    }
    const sizes = Object.fromEntries(
      report.candidates.map((c) => [c.technique, c.evaluation?.size.ratio ?? 1]),
    );
    expect(sizes.fp16).toBeLessThan(0.6);
    expect(sizes.int8).toBeLessThan(0.35);
  });

  it('a bundle whose data file was tampered with after registration is not optimized', async () => {
    const bundle = writeExternalData(big.model, { layout: 'single' });
    const { version: parent } = await registry.registerBundle('mlp-tampered', [
      { name: 'model.onnx', body: bundle.graph },
      ...bundle.files.map((f) => ({ name: f.name, body: Buffer.concat(f.chunks) })),
    ]);
    const data = parent.files?.find((f) => f.role === 'data');
    if (!data) throw new Error('no data file');
    const bytes = Buffer.from((await t.store.get(data.blobKey)).body);
    bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    await t.store.put(data.blobKey, bytes);
    await expect(openParentModel(registry, parent)).rejects.toThrow(/sha256|digest|integrity|tamper/i);
  });
});
