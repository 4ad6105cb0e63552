/**
 * Asynchronous Lambda invocation (`InvocationType: 'Event'`): how background work (optimize jobs,
 * asynchronous inference) reaches its worker function on AWS. Lambda queues the event, answers
 * 202, retries a failed run per the function's async invoke config, and gives the worker its own
 * full timeout instead of API Gateway's 30 s.
 */
// Types only here: the SDK is loaded when an event is first sent (see functions/predict/runtime.ts).
import type { LambdaClient } from '@aws-sdk/client-lambda';
import { MaasError } from '../errors';

/**
 * Queues `payload` for `functionName`; throws `MaasError('unavailable')` naming `what` when Lambda
 * refuses (throttled, denied, unknown function), so the caller can record the failure.
 * @example
 * await invokeEvent(new LambdaClient({}), 'maas-prod-optimize', { maasOptimizeJob: ref }, 'the optimize worker');
 */
export async function invokeEvent(
  client: Pick<LambdaClient, 'send'>,
  functionName: string,
  payload: unknown,
  what: string,
): Promise<void> {
  try {
    const { InvokeCommand } = await import('@aws-sdk/client-lambda');
    const out = await client.send(
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
