/**
 * Job record state machine on both store adapters: create-only records, compare-and-swap claims,
 * takeover of a stale run, and outcomes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../shared/errors';
import {
  createDispatcher,
  InProcessDispatcher,
  jobLayout,
  LambdaEventDispatcher,
  OptimizationJobStore,
  type OptimizationReport,
  parseOptimizeRequest,
} from '../../shared/optimize';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

const report = (statuses: ('registered' | 'rejected' | 'failed')[]): OptimizationReport => ({
  model: 'm',
  parentVersion: 1,
  parentSha256: 'x',
  inputs: { source: 'random', samples: 1 },
  candidates: statuses.map((status, i) => ({
    technique: `t${i}`,
    status,
    ...(status === 'registered' ? { version: 2 + i } : {}),
    ...(status === 'failed' ? { error: 'boom' } : {}),
  })),
  startedAt: '',
  finishedAt: '',
});

describe.each(storeKinds)('OptimizationJobStore (%s)', (kind) => {
  let t: TestStore;
  let clock = Date.parse('2026-01-01T00:00:00Z');
  let jobs: OptimizationJobStore;
  beforeAll(async () => {
    t = await createTestStore(kind, 'opt-jobstore');
    jobs = new OptimizationJobStore(t.store, { now: () => new Date(clock), staleAfterMs: 60_000 });
  });
  afterAll(async () => t?.cleanup());

  it('queued → running (once) → succeeded / rejected / failed', async () => {
    const request = parseOptimizeRequest({ techniques: ['int8'] });
    for (const [statuses, expected] of [
      [['registered', 'rejected'], 'succeeded'],
      [['rejected', 'failed'], 'rejected'],
      [['failed'], 'failed'],
    ] as const) {
      const created = await jobs.create('m', 1, request, 'alice');
      expect(created.record).toMatchObject({
        status: 'queued',
        attempts: 0,
        actor: 'alice',
        model: 'm',
        version: 1,
      });
      const claimed = await jobs.claim('m', created.record.job);
      expect(claimed?.record).toMatchObject({ status: 'running', attempts: 1 });
      expect(await jobs.claim('m', created.record.job)).toBeUndefined(); // a duplicate delivery
      const done = await jobs.finish(claimed!, { report: report([...statuses]) });
      expect(done.record.status).toBe(expected);
      expect(done.record.summary).toHaveLength(statuses.length);
      expect((await jobs.get('m', created.record.job)).record.status).toBe(expected);
      expect(await jobs.claim('m', created.record.job)).toBeUndefined();
    }
  });

  it('a stale running job can be claimed again; a finish with an outdated etag is refused', async () => {
    const created = await jobs.create('m', 1, parseOptimizeRequest({ techniques: ['fp16'] }), 'bob');
    const first = await jobs.claim('m', created.record.job);
    clock += 30_000;
    expect(await jobs.claim('m', created.record.job)).toBeUndefined();
    clock += 60_000;
    const second = await jobs.claim('m', created.record.job);
    expect(second?.record.attempts).toBe(2);
    // The first run's outcome must not overwrite the takeover's record.
    await expect(jobs.finish(first!, { error: new Error('late') })).rejects.toMatchObject({
      kind: 'conflict',
      message: expect.stringMatching(/changed under this worker/),
    });
    expect((await jobs.get('m', created.record.job)).record).toMatchObject({
      status: 'running',
      attempts: 2,
    });
    const done = await jobs.finish(second!, { error: new NotFoundError('referenceInputs key x not found') });
    expect(done.record).toMatchObject({
      status: 'failed',
      error: { code: 'not_found', message: 'referenceInputs key x not found' },
    });
  });

  it('inline reference inputs are stored beside the record; unknown and malformed ids are refused', async () => {
    const request = parseOptimizeRequest({
      techniques: ['int8'],
      referenceInputs: { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 1], data: [1] }] },
    });
    const { record } = await jobs.create('m', 1, request, 'carol');
    expect(record.request.referenceInputs).toEqual({ key: jobLayout.inputs('m', record.job), inline: true });
    expect(JSON.parse((await t.store.get(jobLayout.inputs('m', record.job))).body.toString())).toEqual({
      inputs:
        request.referenceInputs && 'inputs' in request.referenceInputs ? request.referenceInputs.inputs : [],
    });
    await expect(jobs.get('m', 'opt-aaaaaaaa-00000000')).rejects.toThrow(/no optimization job/);
    await expect(jobs.get('m', '../x')).rejects.toThrow(/invalid optimization job id/);
  });
});

describe('createDispatcher', () => {
  const run = async (): Promise<void> => undefined;
  it('picks the adapter from the environment', () => {
    expect(createDispatcher({}, run).kind).toBe('in-process');
    const named = createDispatcher({ MAAS_OPTIMIZE_WORKER_FUNCTION: 'maas-dev-optimize' }, run);
    expect(named).toBeInstanceOf(LambdaEventDispatcher);
    expect((named as LambdaEventDispatcher).functionName).toBe('maas-dev-optimize');
    // Inside a real Lambda, work left in-process would freeze with the container: invoke itself.
    expect(
      (createDispatcher({ AWS_LAMBDA_FUNCTION_NAME: 'maas-prod-optimize' }, run) as LambdaEventDispatcher)
        .functionName,
    ).toBe('maas-prod-optimize');
    // serverless-offline sets both names but has no Lambda to call.
    expect(
      createDispatcher(
        { IS_OFFLINE: 'true', MAAS_OPTIMIZE_WORKER_FUNCTION: 'x', AWS_LAMBDA_FUNCTION_NAME: 'x' },
        run,
      ).kind,
    ).toBe('in-process');
  });

  it('the in-process adapter runs jobs one at a time, after the caller continues', async () => {
    const order: string[] = [];
    const d = new InProcessDispatcher(
      async (ref) => {
        order.push(`start ${ref.job}`);
        await new Promise((r) => setTimeout(r, 5));
        order.push(`end ${ref.job}`);
        if (ref.job === 'b') throw new Error('recorded elsewhere');
      },
      () => order.push('logged'),
    );
    await d.dispatch({ model: 'm', job: 'a' });
    await d.dispatch({ model: 'm', job: 'b' });
    await d.dispatch({ model: 'm', job: 'c' });
    order.push('responded');
    await d.idle();
    expect(order).toEqual([
      'responded',
      'start a',
      'end a',
      'start b',
      'end b',
      'logged',
      'start c',
      'end c',
    ]);
  });
});
