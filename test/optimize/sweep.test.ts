import type { Context } from 'aws-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import { getStore, resetRuntime } from '../../functions/lib/runtime';
import { handler } from '../../functions/optimize/handler';
import { resetOptimizeRuntime } from '../../functions/optimize/runtime';
import {
  InProcessDispatcher,
  type JobRef,
  OptimizationJobStore,
  parseOptimizeRequest,
  runOptimizationJob,
  sweepStaleOptimizations,
} from '../../shared/optimize';
import { ModelRegistry } from '../../shared/registry';
import { tinyModel } from '../support/models';
import { createTestBucket } from '../support/s3';
import { createTestStore, type TestStore } from '../support/stores';

let ts: TestStore | undefined;
afterEach(async () => {
  await ts?.cleanup();
  ts = undefined;
});

const MIN = 60_000;

describe('sweep of stale optimize jobs (optimize schedule)', () => {
  it('re-dispatches running jobs whose worker died, gives up after maxAttempts, and leaves queued, fresh and finished jobs alone', async () => {
    ts = await createTestStore('s3', 'opt-sweep');
    const { store } = ts;
    const registry = new ModelRegistry(store);
    await registry.registerVersion('m', tinyModel(1), { actor: 'test' });
    const t0 = Date.now();
    // Job stores whose clocks stand at t0 + n minutes: the same stale rule, seen later.
    const at = (minutes: number) =>
      new OptimizationJobStore(store, { now: () => new Date(t0 + minutes * MIN) });
    const request = parseOptimizeRequest({
      techniques: ['fp16'],
      tolerances: { minSpeedup: 0.9, maxSlowdown: 100 },
    });
    const create = async () => (await at(0).create('m', 1, request, 'test')).record.job;

    const died = await create(); // claimed once, then its worker died
    await at(0).claim('m', died);
    const cursed = await create(); // killed its worker three times already
    await at(0).claim('m', cursed);
    await at(20).claim('m', cursed);
    await at(40).claim('m', cursed);
    const queued = await create();
    const fresh = await create(); // running, touched 5 minutes before the sweep
    await at(55).claim('m', fresh);
    const finished = await create();
    const claimedFinished = await at(0).claim('m', finished);
    await at(0).abandon(claimedFinished!, { message: 'done', code: 'internal' });

    const later = at(60);
    const dispatched: JobRef[] = [];
    const dispatcher = new InProcessDispatcher(async (ref) => {
      dispatched.push(ref);
      return runOptimizationJob(registry, ref, { store, jobs: later });
    });
    const result = await sweepStaleOptimizations({ store, jobs: later, dispatcher });
    await dispatcher.idle();

    expect(result).toEqual({ redispatched: [`m/${died}`], abandoned: [`m/${cursed}`], errors: [] });
    expect(dispatched).toEqual([{ model: 'm', job: died }]);
    const status = async (job: string) => (await later.get('m', job)).record;
    const rerun = await status(died);
    expect(['succeeded', 'rejected']).toContain(rerun.status); // the worker really ran it to the end
    expect(rerun.attempts).toBe(2);
    expect(await status(cursed)).toMatchObject({
      status: 'failed',
      attempts: 3,
      error: { code: 'internal' },
    });
    expect((await status(cursed)).error?.message).toMatch(/3 times/);
    expect((await status(queued)).status).toBe('queued');
    expect(await status(fresh)).toMatchObject({ status: 'running', attempts: 1 });
    expect(await status(finished)).toMatchObject({ status: 'failed', error: { message: 'done' } });

    // Nothing stale is left: a second sweep does nothing.
    expect(await sweepStaleOptimizations({ store, jobs: later, dispatcher })).toEqual({
      redispatched: [],
      abandoned: [],
      errors: [],
    });
  }, 120_000);

  it("the optimize function's schedule event runs the sweep with the function's own dispatcher", async () => {
    const bucket = await createTestBucket('opt-sweep-fn');
    const saved = { ...process.env };
    try {
      process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
      delete process.env.MAAS_OPTIMIZE_WORKER_FUNCTION;
      resetRuntime();
      resetOptimizeRuntime();
      const store = getStore();
      await new ModelRegistry(store).registerVersion('m', tinyModel(1), { actor: 'test' });
      const request = parseOptimizeRequest({ techniques: ['fp16'] });
      const jobs = new OptimizationJobStore(store);
      await jobs.claim('m', (await jobs.create('m', 1, request, 'test')).record.job);
      // A job claimed just now is running, not stale: the sweep lists it and leaves it alone.
      const swept = await handler({ maasOptimizeSweep: true }, {} as Context);
      expect(swept).toEqual({ redispatched: [], abandoned: [], errors: [] });
      expect((await jobs.listStale('m')).length).toBe(0);
    } finally {
      await bucket.cleanup();
      process.env = saved;
      resetRuntime();
      resetOptimizeRuntime();
    }
  });
});
