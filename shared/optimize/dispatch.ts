/**
 * How a queued job reaches its worker: a small port with two adapters.
 *
 * - {@link LambdaEventDispatcher} (AWS): invokes the worker function asynchronously
 *   (`InvocationType: 'Event'`), so the work gets the function's full timeout instead of API
 *   Gateway's 30 s, and Lambda retries the delivery if the invoke is throttled;
 * - {@link InProcessDispatcher} (local: serverless-offline, tests, the CLI against a file store):
 *   runs the worker in this process after the HTTP response has been produced.
 *
 * {@link createDispatcher} picks one from the environment (see there).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import type { LambdaClient } from '@aws-sdk/client-lambda';
import { getStringFromEnv } from '../settings';
import { SerialRunner } from '../util/concurrency';
import { invokeEvent } from '../util/lambda-event';
import type { JobRef } from './worker';

/** The port. */
export interface OptimizationDispatcher {
  /** Hands the job over; resolves once the hand-over is done (not when the job finishes). */
  dispatch(ref: JobRef): Promise<void>;
  /** Short name for logs and responses ('lambda' / 'in-process'). */
  readonly kind: string;
}

/** The payload the worker receives; the `maasOptimizeJob` key tells it apart from HTTP events. */
export interface WorkerEvent {
  maasOptimizeJob: JobRef;
}

/**
 * Type guard for the worker's event.
 * @example
 * if (isWorkerEvent(event)) await runOptimizationJob(registry, event.maasOptimizeJob);
 */
export function isWorkerEvent(event: unknown): event is WorkerEvent {
  const ref = (event as { maasOptimizeJob?: unknown } | null)?.maasOptimizeJob as
    | Record<string, unknown>
    | undefined;
  return (
    typeof ref === 'object' && ref !== null && typeof ref.model === 'string' && typeof ref.job === 'string'
  );
}

/**
 * Asynchronous Lambda invocation of the worker function.
 * @example
 * await new LambdaEventDispatcher('maas-prod-optimize').dispatch({ model: 'mlp', job });
 */
export class LambdaEventDispatcher implements OptimizationDispatcher {
  readonly kind = 'lambda';
  constructor(
    readonly functionName: string,
    /** Default: the container's shared client (shared/util/lambda-event.ts). */
    private readonly client?: Pick<LambdaClient, 'send'>,
  ) {}

  async dispatch(ref: JobRef): Promise<void> {
    const payload: WorkerEvent = { maasOptimizeJob: ref };
    await invokeEvent(this.functionName, payload, 'the optimize worker', this.client);
  }
}

/** Where in-process job trouble goes unless the caller passes its own `log` (Powertools JSON lines). */
const dispatchLogger = new Logger({ serviceName: 'maas-optimize' });

/**
 * Runs jobs in this process, one after another, after the current event-loop turn.
 * @example
 * const local = new InProcessDispatcher((ref) => runOptimizationJob(registry, ref));
 * await local.dispatch({ model: 'mlp', job });
 * await local.idle(); // tests: wait for the job
 */
export class InProcessDispatcher implements OptimizationDispatcher {
  readonly kind = 'in-process';
  private readonly runner = new SerialRunner();

  /** `run` must record its own failures (runOptimizationJob does); anything it throws is logged. */
  constructor(
    private readonly run: (ref: JobRef) => Promise<unknown>,
    private readonly log: (message: string, error: unknown) => void = (m, e) =>
      dispatchLogger.error(m, { error: String(e) }),
  ) {}

  async dispatch(ref: JobRef): Promise<void> {
    // Serialized: optimization is CPU-bound, two at once would only distort each other's latency numbers.
    this.runner.enqueue(
      () => this.run(ref),
      (e) => this.log(`optimize job ${ref.job} failed`, e),
    );
  }

  /** Resolves when every dispatched job has finished (tests, graceful shutdown). */
  idle(): Promise<void> {
    return this.runner.idle();
  }
}

/**
 * The dispatcher the environment asks for:
 * - serverless-offline (`IS_OFFLINE` set): in-process, even though serverless.yml sets the
 *   worker function name (there is no real Lambda to invoke locally);
 * - `MAAS_OPTIMIZE_WORKER_FUNCTION` set: asynchronous invoke of that function;
 * - inside a real Lambda without it (`AWS_LAMBDA_FUNCTION_NAME`): the function invokes itself,
 *   because in-process work would be frozen with the container once the response is returned;
 * - otherwise (tests, CLI, plain Node): in-process.
 * @example
 * const dispatcher = createDispatcher(process.env, (ref) => runOptimizationJob(getRegistry(), ref));
 */
export function createDispatcher(
  env: Record<string, string | undefined>,
  run: (ref: JobRef) => Promise<unknown>,
): OptimizationDispatcher {
  if (env.IS_OFFLINE) return new InProcessDispatcher(run);
  const fn =
    getStringFromEnv({ key: 'MAAS_OPTIMIZE_WORKER_FUNCTION', defaultValue: undefined }, env) ||
    env.AWS_LAMBDA_FUNCTION_NAME;
  return fn ? new LambdaEventDispatcher(fn) : new InProcessDispatcher(run);
}
