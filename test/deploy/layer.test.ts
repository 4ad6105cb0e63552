/**
 * layers/onnxruntime/build.ts: the layer is reproducible, holds one architecture's binaries only,
 * and is complete: onnxruntime loads from it alone (as Lambda loads it from /opt/nodejs) and runs
 * the demo model.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildIrisClassifier, irisReference } from '../../dev/demo/iris';
import { buildOnnxRuntimeLayer } from '../../layers/onnxruntime/build';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'maas-layer-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('onnxruntime layer build', () => {
  it('produces identical content on every build, with fixed file times', () => {
    const a = buildOnnxRuntimeLayer({
      arch: 'x86_64',
      outDir: path.join(tmp, 'a'),
      force: true,
      log: () => {},
    });
    const b = buildOnnxRuntimeLayer({
      arch: 'x86_64',
      outDir: path.join(tmp, 'b'),
      force: true,
      log: () => {},
    });
    expect(a.rebuilt && b.rebuilt).toBe(true);
    expect(b.contentHash).toBe(a.contentHash);
    expect(b.files).toEqual(a.files);
    for (const f of a.files)
      expect(fs.statSync(path.join(a.dir, f.path)).mtime.getTime()).toBe(315532800_000);
    // Up to date: a second call does no work.
    expect(
      buildOnnxRuntimeLayer({ arch: 'x86_64', outDir: path.join(tmp, 'a'), log: () => {} }).rebuilt,
    ).toBe(false);
  });

  it("keeps only the chosen architecture's Linux binaries", () => {
    const x64 = buildOnnxRuntimeLayer({ arch: 'x86_64', outDir: path.join(tmp, 'a'), log: () => {} });
    const arm = buildOnnxRuntimeLayer({
      arch: 'arm64',
      outDir: path.join(tmp, 'c'),
      force: true,
      log: () => {},
    });
    const binaries = (m: typeof x64) => m.files.map((f) => f.path).filter((p) => p.includes('/bin/'));
    expect(binaries(x64).every((p) => p.includes('/bin/napi-v6/linux/x64/'))).toBe(true);
    expect(binaries(arm).every((p) => p.includes('/bin/napi-v6/linux/arm64/'))).toBe(true);
    expect(binaries(x64).length).toBeGreaterThan(0);
    expect(x64.totalBytes).toBeLessThan(100 * 1024 * 1024); // vs ~290 MB for the npm package with every platform
  });

  it('is complete: onnxruntime loads from the layer alone and runs the demo model', () => {
    const layer = buildOnnxRuntimeLayer({ arch: 'x86_64', outDir: path.join(tmp, 'a'), log: () => {} });
    const work = fs.mkdtempSync(path.join(tmp, 'run-')); // outside the repository: no node_modules to fall back on
    fs.writeFileSync(path.join(work, 'iris.onnx'), buildIrisClassifier().bytes);
    const script = `
      const ort = require('onnxruntime-node');
      if (!require.resolve('onnxruntime-node').startsWith(process.env.NODE_PATH)) throw new Error('not loaded from the layer');
      (async () => {
        const session = await ort.InferenceSession.create(require('fs').readFileSync('iris.onnx'));
        const out = await session.run({ input: new ort.Tensor('float32', Float32Array.from([6.3, 3.3, 6.0, 2.5]), [1, 4]) });
        console.log(JSON.stringify(Array.from(out.probabilities.data)));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const run = spawnSync(process.execPath, ['-e', script], {
      cwd: work,
      env: { PATH: process.env.PATH, NODE_PATH: path.join(layer.dir, 'nodejs/node_modules') },
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    const probabilities = JSON.parse(run.stdout) as number[];
    irisReference([6.3, 3.3, 6.0, 2.5]).forEach((p, i) => expect(probabilities[i]).toBeCloseTo(p, 5));
  });
});
