/**
 * Local stand-in for the S3 `incoming/` trigger: watches the store's `incoming/` prefix and, for
 * each new file, invokes the register-version function with the same S3 ObjectCreated event AWS
 * would send, through serverless-offline's Lambda Invoke endpoint. So a file dropped into
 * `.maas/incoming/<name>/` runs exactly the handler code path of an upload to the bucket.
 *
 * Polls with `store.list` rather than `fs.watch`: it works for any store (also an S3 store from
 * `MAAS_STORE`), needs no platform-specific watcher, and lets a file be picked up only once its
 * size and etag stopped changing (a copy in progress is not ingested half-written).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { encodeS3EventKey, INCOMING_PREFIX, type IngestOutcome } from '../../shared/registry/incoming';
import { listAll, type ObjectInfoSummary, type ObjectStore, S3ObjectStore } from '../../shared/store';

/** A Lambda invocation: posts `event` to a function and returns its parsed result. */
export type InvokeFunction = (event: unknown) => Promise<unknown>;

/** Options of {@link IncomingPoller}. */
export interface IncomingPollerOptions {
  /** Poll period (default 1000 ms). */
  intervalMs?: number;
  /** Bucket name put into events for file stores (they ignore it; default `maas-local`). S3 stores use their own bucket. */
  bucket?: string;
  region?: string;
  /** Progress and errors (default: a Powertools Logger). */
  log?: (line: string) => void;
}

/** Where progress goes unless the caller passes `log` (`npm start` passes the framework's log). */
const pollerLogger = new Logger({ serviceName: 'maas-incoming' });

const defaults: Required<IncomingPollerOptions> = {
  intervalMs: 1000,
  bucket: 'maas-local',
  region: 'us-east-1',
  log: (line) => pollerLogger.info(line),
};

/** Key segments of files still being written by common tools, or hidden/editor files. */
function isPartialOrHidden(key: string): boolean {
  const file = key.slice(key.lastIndexOf('/') + 1);
  return key.split('/').some((s) => s.startsWith('.')) || /(\.part|\.tmp|\.crdownload|~)$/i.test(file);
}

/**
 * The S3 ObjectCreated:Put notification AWS sends for one object.
 *
 * @example
 * ```ts
 * const event = s3ObjectCreatedEvent('maas-local', { key: 'incoming/iris/a.onnx', size: 120, etag: 'x' });
 * ```
 */
export function s3ObjectCreatedEvent(
  bucket: string,
  object: Pick<ObjectInfoSummary, 'key' | 'size' | 'etag'>,
  region = 'us-east-1',
  now = new Date(),
): { Records: unknown[] } {
  return {
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: region,
        eventTime: now.toISOString(),
        eventName: 'ObjectCreated:Put',
        userIdentity: { principalId: 'maas-local' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: { 'x-amz-request-id': 'local', 'x-amz-id-2': 'local' },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 'incoming',
          bucket: {
            name: bucket,
            ownerIdentity: { principalId: 'maas-local' },
            arn: `arn:aws:s3:::${bucket}`,
          },
          object: {
            key: encodeS3EventKey(object.key),
            size: object.size,
            eTag: object.etag,
            sequencer: now.getTime().toString(16).toUpperCase(),
          },
        },
      },
    ],
  };
}

/**
 * Invokes a function through serverless-offline's Lambda API (`POST /2015-03-31/functions/{name}/invocations`).
 *
 * @example
 * ```ts
 * const invoke = offlineInvoker('http://127.0.0.1:3002', 'maas-dev-registerVersion');
 * await invoke({ Records: [] });
 * ```
 */
export function offlineInvoker(lambdaEndpoint: string, functionName: string): InvokeFunction {
  return async (event) => {
    const response = await fetch(
      `${lambdaEndpoint}/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-amz-invocation-type': 'RequestResponse' },
        body: JSON.stringify(event),
      },
    );
    const text = await response.text();
    const failed =
      !response.ok ||
      response.headers.has('x-amz-function-error') ||
      response.headers.has('x-amzn-errortype');
    if (failed) throw new Error(`${functionName} failed (${response.status}): ${text.slice(0, 500)}`);
    return text ? (JSON.parse(text) as unknown) : undefined;
  };
}

/**
 * Polls `incoming/` and hands each new, settled object to `invoke` as an S3 event, one at a time.
 * Objects the function leaves in place (it normally deletes or moves them) are not re-sent until
 * they change; failures are retried on a later poll.
 *
 * @example
 * ```ts
 * const poller = new IncomingPoller(store, offlineInvoker(url, 'maas-dev-registerVersion'));
 * poller.start();
 * // ...
 * await poller.stop();
 * ```
 */
export class IncomingPoller {
  private readonly options: Required<IncomingPollerOptions>;
  /** key → etag seen on the previous poll (to wait until a file stops changing). */
  private readonly lastSeen = new Map<string, string>();
  /** key → etag already handed to the function. */
  private readonly done = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly invoke: InvokeFunction,
    options: IncomingPollerOptions = {},
  ) {
    this.options = { ...defaults, ...options };
  }

  /** Starts polling (first poll right away). */
  start(): void {
    this.stopped = false;
    const tick = (): void => {
      this.running = this.pollOnce()
        .then(() => undefined)
        .catch((e: unknown) => this.options.log(`maas: incoming/ poll failed: ${(e as Error).message}`))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.options.intervalMs);
        });
    };
    tick();
  }

  /** Stops polling and waits for an invocation in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One poll: returns the keys handed to the function. */
  async pollOnce(): Promise<string[]> {
    const { objects } = await listAll(this.store, { prefix: INCOMING_PREFIX });
    const present = new Set(objects.map((o) => o.key));
    for (const key of [...this.lastSeen.keys()]) if (!present.has(key)) this.lastSeen.delete(key);
    for (const key of [...this.done.keys()]) if (!present.has(key)) this.done.delete(key);
    const sent: string[] = [];
    for (const object of objects) {
      if (this.stopped) break;
      if (isPartialOrHidden(object.key) || this.done.get(object.key) === object.etag) continue;
      const settled = this.lastSeen.get(object.key) === object.etag;
      this.lastSeen.set(object.key, object.etag);
      if (!settled) continue;
      try {
        // What S3 itself would send: for an S3 store (an S3-compatible server has no Lambda
        // notifications) the store's bucket and the full key including the store's prefix.
        const event =
          this.store instanceof S3ObjectStore
            ? s3ObjectCreatedEvent(
                this.store.bucket,
                { ...object, key: this.store.full(object.key) },
                this.options.region,
              )
            : s3ObjectCreatedEvent(this.options.bucket, object, this.options.region);
        const result = await this.invoke(event);
        this.done.set(object.key, object.etag);
        sent.push(object.key);
        this.options.log(`maas: incoming ${object.key}: ${describe(result)}`);
      } catch (e) {
        this.options.log(`maas: incoming ${object.key} failed, will retry: ${(e as Error).message}`);
      }
    }
    return sent;
  }
}

function describe(result: unknown): string {
  // The register-version function's S3EventReport, as JSON from the Lambda endpoint.
  const outcomes = (result as { outcomes?: IngestOutcome[] } | undefined)?.outcomes;
  if (!outcomes) return JSON.stringify(result);
  return outcomes
    .map((o) =>
      'version' in o
        ? `${o.status} ${o.name} version ${o.version}`
        : 'error' in o
          ? `${o.status}: ${o.error.error}`
          : o.status,
    )
    .join('; ');
}
