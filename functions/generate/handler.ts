/**
 * The text-generation routes (OpenAI-compatible `/v1/…` and OIP `…/generate[_stream]`) as a
 * Lambda response-streaming handler (`awslambda.streamifyResponse`, behind a Function URL with
 * `InvokeMode: RESPONSE_STREAM`): tokens reach the client as they are generated. Thin: event →
 * `handleGenerateRequest` (shared/generate/routes.ts) → status, headers and body or SSE stream.
 * Generation ends `MAAS_GENERATE_DEADLINE_MARGIN_MS` before the function's time limit
 * (finish_reason "length") and stops when the client disconnects.
 */
import type { Writable } from 'node:stream';
import type { Context, LambdaFunctionURLEvent } from 'aws-lambda';
import { type ResponseStream, streamifyResponse } from 'lambda-stream';
import { type GenerateSettings, generateSettingsFromEnv } from '../../shared/generate/config';
import { type DoneEvent, generationObservation, recordGeneration } from '../../shared/generate/metrics';
import { openAIError } from '../../shared/generate/openai';
import { handleGenerateRequest, type TextModelResolver } from '../../shared/generate/routes';
import type { GenerationObserver } from '../../shared/inference/observer';
import type { RequestMetrics } from '../../shared/request-metrics';

/** The runtime's `awslambda` global (only in Lambda, or a test adapter that stands in for it). */
interface AwsLambdaGlobal {
  HttpResponseStream?: {
    from(stream: Writable, prelude: { statusCode: number; headers: Record<string, string> }): Writable;
  };
}

/** Status and headers first (the runtime's JSON prelude), then the body, as the runtime frames it. */
function httpStream(stream: ResponseStream, statusCode: number, headers: Record<string, string>): Writable {
  const runtime = (globalThis as { awslambda?: AwsLambdaGlobal }).awslambda;
  if (runtime?.HttpResponseStream) return runtime.HttpResponseStream.from(stream, { statusCode, headers });
  // lambda-stream's local stand-in buffers the body and answers a 200 with this content type.
  stream.setContentType(headers['content-type'] ?? 'application/json');
  return stream;
}

/** Writes and waits for the flush; rejects when the stream closes first (a write to a vanished client may never call back). */
const write = (out: Writable, text: string) =>
  new Promise<void>((resolve, reject) => {
    const closed = () => reject(new Error('the response stream closed'));
    out.once('close', closed);
    out.write(text, (error) => {
      out.off('close', closed);
      if (error) reject(error);
      else resolve();
    });
  });

/** Options of {@link createGenerateHandler}. */
export interface GenerateHandlerOptions {
  /** Settings, or how to read them per request (default: `MAAS_GENERATE_*` from the environment). */
  settings?: GenerateSettings | (() => GenerateSettings);
  /** Each generation's TTFT, tokens/s, token counts and finish reason (EMF on Lambda), flushed when it ends. */
  metrics?: RequestMetrics;
  /** Monitoring's capture: each finished generation's counts and timings, flushed when due. */
  observer?: GenerationObserver;
}

/**
 * Builds the streaming handler over a model resolver (the predict side's registry, session cache
 * and canary split).
 * @example
 * export const handler = createGenerateHandler(predictTextModels, { metrics: createRequestMetrics() });
 */
export function createGenerateHandler(resolver: TextModelResolver, options: GenerateHandlerOptions = {}) {
  const { settings = generateSettingsFromEnv, metrics, observer } = options;
  const onDone =
    metrics || observer
      ? (
          done: DoneEvent,
          model: { name: string; version: number; alias?: string },
          prompt: string | readonly number[],
        ) => {
          if (metrics) {
            recordGeneration(metrics, done, { model: model.name, version: String(model.version) });
            metrics.flush();
          }
          if (observer) {
            // The text goes along by reference; the capture keeps it only when told to (MAAS_CAPTURE_TEXT_SAMPLE).
            observer.observeGeneration(generationObservation(done, model, prompt));
            // Bounded by the observer's own flush budget; the response has been written by now.
            if (observer.flushDue) void observer.flush();
          }
        }
      : undefined;
  return streamifyResponse(
    async (event: LambdaFunctionURLEvent, responseStream: ResponseStream, context?: Context) => {
      const controller = new AbortController();
      // The runtime errors / closes the stream when the client goes away: stop generating.
      const stop = () => {
        if (!responseStream.writableFinished) controller.abort();
      };
      responseStream.on('close', stop).on('error', stop);
      let margin: number;
      try {
        margin = (typeof settings === 'function' ? settings() : settings).deadlineMarginMs;
      } catch (error) {
        // An invalid MAAS_GENERATE_* setting: every request is a 500 naming no values.
        const { status, body } = openAIError(error);
        const out = httpStream(responseStream, status, { 'content-type': 'application/json' });
        await new Promise<void>((resolve) => out.end(JSON.stringify(body), resolve));
        return;
      }
      const remaining = context?.getRemainingTimeInMillis?.();
      const deadline = remaining !== undefined ? Date.now() + remaining - margin : undefined;
      const body =
        event.body === undefined
          ? undefined
          : event.isBase64Encoded
            ? Buffer.from(event.body, 'base64').toString('utf8')
            : event.body;
      const reply = await handleGenerateRequest(
        { method: event.requestContext.http.method, path: event.rawPath, body },
        resolver,
        {
          signal: controller.signal,
          ...(deadline !== undefined ? { deadline } : {}),
          ...(onDone ? { onDone } : {}),
        },
      );
      const out = httpStream(responseStream, reply.status, reply.headers);
      let failed = false;
      const send = async (text: string) => {
        if (failed || controller.signal.aborted) return;
        try {
          await write(out, text);
        } catch {
          failed = true; // the client is gone
          controller.abort();
        }
      };
      // After an abort the stream is drained unwritten: the generator stops at its next step
      // and still reports how it ended.
      if ('stream' in reply) for await (const text of reply.stream) await send(text);
      else await send(reply.body);
      // From Node.js 24 Lambda stops waiting for pending work when the stream ends: end it last.
      if (!failed && !controller.signal.aborted) await new Promise<void>((resolve) => out.end(resolve));
    },
  );
}
