/**
 * Asynchronous Lambda invocation (`InvocationType: 'Event'`): how background work (optimize jobs,
 * asynchronous inference) reaches its worker function on AWS. Lambda queues the event, answers
 * 202, retries a failed run per the function's async invoke config, and gives the worker its own
 * full timeout instead of API Gateway's 30 s.
 */
// Types only: the SDK is imported when the first event is sent, so a cold start that never
// invokes (most predict requests) does not evaluate it.
import type { LambdaClient } from '@aws-sdk/client-lambda';
import { MaasError } from '../errors';

let sharedClient: Promise<LambdaClient> | undefined;

/** The container's Lambda client (default configuration from the environment), built on first use. */
function defaultLambdaClient(): Promise<LambdaClient> {
  sharedClient ??= import('@aws-sdk/client-lambda').then(({ LambdaClient }) => new LambdaClient({}));
  return sharedClient;
}

/**
 * Queues `payload` for `functionName`; throws `MaasError('unavailable')` naming `what` when Lambda
 * refuses (throttled, denied, unknown function), so the caller can record the failure.
 * @example
 * await invokeEvent('maas-prod-optimize', { maasOptimizeJob: ref }, 'the optimize worker');
 */
export async function invokeEvent(
  functionName: string,
  payload: unknown,
  what: string,
  /** Default: the container's shared client. */
  client?: Pick<LambdaClient, 'send'>,
): Promise<void> {
  try {
    const { InvokeCommand } = await import('@aws-sdk/client-lambda');
    const out = await (client ?? (await defaultLambdaClient())).send(
      new InvokeCommand({
        FunctionName: functionName,
        InvocationType: 'Event',
        Payload: new TextEncoder().encode(JSON.stringify(payload)),
      }),
    );
    // Event invocations answer 202 once Lambda has queued the event.
    if (out.StatusCode !== undefined && out.StatusCode !== 202)
      throw new Error(`Lambda answered ${out.StatusCode}`);
  } catch (e) {
    throw new MaasError(
      'unavailable',
      `could not start ${what} ${functionName}: ${e instanceof Error ? e.message : String(e)}`,
      undefined,
      { cause: e },
    );
  }
}
