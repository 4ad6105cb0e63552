import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceService, inferenceSettingsFromEnv } from '../../shared/inference';
import { ModelRegistry } from '../../shared/registry';
import { tinyModel } from '../support/models';
import { createTestStore, type TestStore } from '../support/stores';

/** OS threads of this process (Linux). */
const threads = (): number => Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);

describe('one container serving many small models (file store, real onnxruntime)', () => {
  let ts: TestStore;
  let cacheDir: string;
  const MODELS = 120;
  beforeAll(async () => {
    ts = await createTestStore('file', 'many-models');
    cacheDir = await mkdtemp(path.join(tmpdir(), 'many-models-'));
    const registry = new ModelRegistry(ts.store);
    for (let i = 0; i < MODELS; i++) await registry.registerVersion(`m${i}`, tinyModel(i));
  }, 120_000);
  afterAll(async () => {
    await ts?.cleanup();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('sessions of small models add no OS thread each, and the session cache counts what each session holds', async () => {
    const budget = 8 * 1024 * 1024;
    const service = new InferenceService({
      registry: new ModelRegistry(ts.store),
      // Two intra-op threads as a 2-vCPU Lambda gets by default: each would be one more OS thread per session.
      settings: {
        modelCacheDir: cacheDir,
        sessionCacheBytes: budget,
        session: { ...inferenceSettingsFromEnv().session, intraOpThreads: 2 },
      },
    });
    const body = JSON.stringify({
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
    });
    const before = threads();
    for (let i = 0; i < MODELS; i++) {
      const res = await service.infer(`m${i}`, undefined, body, { contentType: 'application/json' });
      expect(res.model).toBe(`m${i}`);
    }
    const grown = threads() - before;
    expect(grown).toBeLessThan(10);
    // Tiny files, but each session holds ~200 KB: an 8 MB budget keeps a few dozen, not all 120.
    expect(service.sessions.keys().length).toBeLessThan(40);
    expect(service.sessions.bytes).toBeLessThanOrEqual(budget);
    await service.close();
  }, 120_000);
});
