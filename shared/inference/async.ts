/**
 * Asynchronous inference, in the manner of SageMaker Asynchronous Inference: for inputs (and
 * outputs) beyond Lambda's 6 MB request/response limit, or runs longer than API Gateway's 30 s.
 *
 * 1. {@link AsyncInferenceService.createInputTicket}: somewhere to put the input bytes (a presigned
 *    S3 POST for a key under `async/inputs/`; with the file store, the file to write);
 * 2. {@link AsyncInferenceService.submit}: checks what is cheap to check (model and version
 *    resolve, the input exists and is within `MAAS_ASYNC_MAX_INPUT_BYTES`), creates the request
 *    record (create-only) and hands its id to the worker; the caller gets a 202 and a status URL;
 * 3. {@link AsyncInferenceService.run} (the worker): claims the record once (a duplicate delivery
 *    finds it claimed), records a deadline within the function's time limit, reads the input
 *    bounded by the size limit, runs it through the same {@link InferenceService} as synchronous
 *    requests (version and alias resolution, canaries, metrics, capture), writes the OIP response
 *    to `async/outputs/`, and records `succeeded` or `failed` with the error body a synchronous
 *    request would have got;
 * 4. {@link AsyncInferenceService.status}: pending, running, succeeded (a small JSON response
 *    inline, else a presigned link or the local download route) or failed. A record whose
 *    deadline passed is failed with `deadline_exceeded` when read, so nothing stays "running".
 *
 * Knows nothing of Lambda or HTTP: the handlers adapt (functions/predict/async.ts).
 */
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { InvalidArgumentError, MaasError, NotFoundError, PayloadTooLargeError } from '../errors';
import { type ErrorBody, errorToHttp } from '../http/errors';
import { readSettings, type SettingsReader } from '../settings';
import { FileObjectStore, ObjectNotFoundError, type ObjectStore, S3ObjectStore } from '../store';
import { createJson, KEEP, readJson, updateJson } from '../store/documents';
import { SerialRunner } from '../util/concurrency';
import { type InferenceLogger, silentLogger } from './logger';
import type { InferenceService } from './service';

/** Where callers put inputs; the only keys a submission may name (the rest of the store is private). */
export const ASYNC_INPUTS_PREFIX = 'async/inputs/';
const REQUESTS_PREFIX = 'async/requests/';
const OUTPUTS_PREFIX = 'async/outputs/';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A plain file name under the inputs prefix (a ticket's uuid, or a name chosen for a dropped file). */
const INPUT_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;
/** Kept free of the worker's deadline: time to write the failure before Lambda stops the function. */
const DEADLINE_MARGIN_MS = 3000;

/** Settings of asynchronous inference (`MAAS_ASYNC_*`). */
export interface AsyncSettings {
  /** Largest input accepted, bytes (checked at submit from the stored size, and again while reading). */
  maxInputBytes: number;
  /** Successful JSON responses up to this size are returned inline by the status route. */
  inlineBytes: number;
  /** Longest a run may take; on Lambda also bounded by the worker's remaining time. */
  timeoutMs: number;
  /** Longest a request may wait to start (Lambda's maximum event age for the worker). */
  queueMs: number;
  /** Validity of input upload tickets and result links, seconds. */
  linkExpiresSeconds: number;
}

/**
 * The asynchronous inference settings read through a caller's reader.
 *
 * | variable | default |
 * | --- | --- |
 * | `MAAS_ASYNC_MAX_INPUT_BYTES` | 268435456 (256 MiB) |
 * | `MAAS_ASYNC_INLINE_BYTES` | 1048576 (1 MiB) |
 * | `MAAS_ASYNC_TIMEOUT_SECONDS` | 900 |
 * | `MAAS_ASYNC_QUEUE_SECONDS` | 21600 (Lambda's maximum event age) |
 * | `MAAS_ASYNC_LINK_EXPIRES_SECONDS` | 900 |
 * @example
 * const settings = readSettings(readAsyncSettings, { MAAS_ASYNC_MAX_INPUT_BYTES: '1000000' });
 */
export function readAsyncSettings(r: SettingsReader): AsyncSettings {
  const int = (key: string, defaultValue: number, min: number, max?: number): number =>
    r.getNumberFromEnv({ key, defaultValue, min, integer: true, ...(max ? { max } : {}) });
  return {
    maxInputBytes: int('MAAS_ASYNC_MAX_INPUT_BYTES', 256 * 1024 * 1024, 1),
    // The status answer is a synchronous Lambda response (6 MB at most, base64 not needed: JSON).
    inlineBytes: int('MAAS_ASYNC_INLINE_BYTES', 1024 * 1024, 0, 4 * 1024 * 1024),
    timeoutMs: int('MAAS_ASYNC_TIMEOUT_SECONDS', 900, 1) * 1000,
    queueMs: int('MAAS_ASYNC_QUEUE_SECONDS', 21_600, 60) * 1000,
    linkExpiresSeconds: int('MAAS_ASYNC_LINK_EXPIRES_SECONDS', 900, 1, 604_800),
  };
}

/**
 * The settings from the environment; an invalid one throws `MisconfiguredError`.
 * @example
 * const { maxInputBytes } = asyncSettingsFromEnv();
 */
export function asyncSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): AsyncSettings {
  return readSettings(readAsyncSettings, env);
}

export type AsyncStatus = 'pending' | 'running' | 'succeeded' | 'failed';

/** What a submission names: the stored input and how to decode it. */
export interface AsyncSubmission {
  /** `async/inputs/{name}`, as returned by the input ticket. */
  inputKey: string;
  /** Content type of the stored body (default `application/json`). */
  contentType?: string;
  /** The binary tensor extension's `Inference-Header-Content-Length` of the stored body. */
  headerLength?: number;
}

/** A stored body: where, how big, how to decode it. */
export interface AsyncBody {
  key: string;
  size: number;
  contentType: string;
  headerLength?: number;
}

/** The request record (`async/requests/{id}.json`). */
export interface AsyncRecord {
  id: string;
  model: string;
  /** Version number or alias as requested; absent: the default (production, else latest). */
  ref?: string;
  input: AsyncBody;
  status: AsyncStatus;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** A pending request must start, and a running one finish, by then; else it is failed. */
  deadline: string;
  /** Worker deliveries that claimed the record (1 unless a run was lost). */
  attempts: number;
  /** The version that answered. */
  version?: number;
  output?: AsyncBody;
  /** HTTP status a synchronous request would have had, with its error body. */
  httpStatus?: number;
  error?: ErrorBody;
}

/** What the status route answers. */
export interface AsyncStatusView {
  id: string;
  model: string;
  ref?: string;
  status: AsyncStatus;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  deadline: string;
  input: { key: string; size: number };
  version?: number;
  /** A successful JSON response small enough to inline (`MAAS_ASYNC_INLINE_BYTES`). */
  response?: unknown;
  /** Where to fetch any other successful response. */
  output?: {
    url: string;
    contentType: string;
    size: number;
    inferenceHeaderContentLength?: number;
    expiresAt?: string;
  };
  httpStatus?: number;
  error?: ErrorBody;
}

/** Where to put an input: a presigned POST (S3), or a file to write (file store, `npm start`). */
export interface AsyncInputTicket {
  inputKey: string;
  /** `POST`: multipart form to `url`, `fields` first, then the bytes as field `file`. `FILE`: write the bytes to `path`. */
  method: 'POST' | 'FILE';
  url?: string;
  fields?: Record<string, string>;
  path?: string;
  maxBytes: number;
  expiresAt: string;
}

/** The event the worker function receives (asynchronous Lambda invoke). */
export interface AsyncWorkerEvent {
  maasAsyncInference: { id: string };
}

/**
 * Type guard for the worker's event.
 * @example
 * if (isAsyncWorkerEvent(event)) await service.run(event.maasAsyncInference.id);
 */
export function isAsyncWorkerEvent(event: unknown): event is AsyncWorkerEvent {
  const ref = (event as { maasAsyncInference?: { id?: unknown } } | null)?.maasAsyncInference;
  return typeof ref === 'object' && ref !== null && typeof ref.id === 'string';
}

/**
 * Parses a submission body (`{inputKey, contentType?, inferenceHeaderContentLength?}`); a bad
 * field is a 400 naming it. Only keys under {@link ASYNC_INPUTS_PREFIX} are accepted.
 * @example
 * const submission = parseAsyncSubmission({ inputKey: 'async/inputs/0b6f…' });
 */
export function parseAsyncSubmission(body: Record<string, unknown>): AsyncSubmission {
  const { inputKey, contentType, inferenceHeaderContentLength } = body;
  const name =
    typeof inputKey === 'string' && inputKey.startsWith(ASYNC_INPUTS_PREFIX)
      ? inputKey.slice(ASYNC_INPUTS_PREFIX.length)
      : '';
  if (!INPUT_NAME.test(name) || name.includes('..'))
    throw new InvalidArgumentError(
      `inputKey must be ${ASYNC_INPUTS_PREFIX}{name} as returned by POST /v2/async/inputs`,
      { field: 'inputKey' },
    );
  if (contentType !== undefined && (typeof contentType !== 'string' || contentType.length > 200))
    throw new InvalidArgumentError('contentType must be a string', { field: 'contentType' });
  if (
    inferenceHeaderContentLength !== undefined &&
    !(Number.isSafeInteger(inferenceHeaderContentLength) && (inferenceHeaderContentLength as number) >= 0)
  )
    throw new InvalidArgumentError('inferenceHeaderContentLength must be a non-negative integer', {
      field: 'inferenceHeaderContentLength',
    });
  return {
    inputKey: inputKey as string,
    ...(contentType !== undefined ? { contentType: contentType as string } : {}),
    ...(inferenceHeaderContentLength !== undefined
      ? { headerLength: inferenceHeaderContentLength as number }
      : {}),
  };
}

export interface AsyncInferenceOptions {
  store: ObjectStore;
  inference: InferenceService;
  settings?: Partial<AsyncSettings>;
  /**
   * Hands a submitted id to the worker (resolves once handed over, not when done). Default: run
   * in this process after the current event-loop turn (local, tests).
   */
  dispatch?: (id: string) => Promise<void>;
  /** Local download route of a result (file store): there is nothing to presign. */
  localOutputPath?: (id: string) => string;
  logger?: InferenceLogger;
  now?: () => number;
}

/**
 * @example
 * ```ts
 * const service = new AsyncInferenceService({ store, inference });
 * const ticket = await service.createInputTicket(); // upload the body there
 * const record = await service.submit('iris', undefined, { inputKey: ticket.inputKey });
 * await service.idle();
 * const view = await service.status(record.id); // { status: 'succeeded', response | output }
 * ```
 */
export class AsyncInferenceService {
  readonly settings: AsyncSettings;
  private readonly store: ObjectStore;
  private readonly inference: InferenceService;
  private readonly dispatchId: (id: string) => Promise<void>;
  private readonly localOutputPath: (id: string) => string;
  private readonly logger: InferenceLogger;
  private readonly now: () => number;
  private readonly runner: SerialRunner;

  constructor(options: AsyncInferenceOptions) {
    this.settings = { ...asyncSettingsFromEnv(), ...options.settings };
    this.store = options.store;
    this.inference = options.inference;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.localOutputPath = options.localOutputPath ?? ((id) => `/v2/async/${id}/output`);
    this.runner = new SerialRunner();
    this.dispatchId =
      options.dispatch ??
      (async (id) =>
        this.runner.enqueue(
          () => this.run(id),
          (e) => this.logger.error('async inference run failed', { id, error: String(e) }),
        ));
  }

  /** Somewhere to put an input of at most `MAAS_ASYNC_MAX_INPUT_BYTES`. */
  async createInputTicket(): Promise<AsyncInputTicket> {
    const inputKey = `${ASYNC_INPUTS_PREFIX}${randomUUID()}`;
    const expires = this.settings.linkExpiresSeconds;
    const expiresAt = new Date(this.now() + expires * 1000).toISOString();
    const maxBytes = this.settings.maxInputBytes;
    if (this.store instanceof S3ObjectStore) {
      // Loaded on first use: it is ~150 KB of bundle that every cold start would otherwise evaluate.
      const { createPresignedPost } = await import('@aws-sdk/s3-presigned-post');
      const post = await createPresignedPost(this.store.client, {
        Bucket: this.store.bucket,
        Key: this.store.full(inputKey),
        Conditions: [['content-length-range', 1, maxBytes]],
        Expires: expires,
      });
      return { inputKey, method: 'POST', url: post.url, fields: post.fields, maxBytes, expiresAt };
    }
    if (this.store instanceof FileObjectStore) {
      // Each key of the file store is a plain file: writing it is the upload (as in incoming/).
      return { inputKey, method: 'FILE', path: path.join(this.store.root, inputKey), maxBytes, expiresAt };
    }
    throw new MaasError('internal', `the store ${this.store.location} cannot take async inputs`);
  }

  /**
   * Accepts a request: 404 for an unknown model, version or input, 413 for an input over the
   * limit, 400 for a bad submission; nothing is written unless all of that passed. The record
   * is `pending` and its id handed to the worker; a failed hand-over fails the record (503).
   */
  async submit(name: string, ref: string | undefined, submission: AsyncSubmission): Promise<AsyncRecord> {
    await this.inference.routes.resolve(name, ref);
    let size: number;
    try {
      size = (await this.store.head(submission.inputKey)).size;
    } catch (e) {
      if (e instanceof ObjectNotFoundError)
        throw new NotFoundError(`nothing was uploaded to ${submission.inputKey}`, {
          inputKey: submission.inputKey,
        });
      throw e;
    }
    this.assertSize(size);
    if (size === 0) throw new InvalidArgumentError(`the input ${submission.inputKey} is empty`);
    const id = randomUUID();
    const now = this.now();
    const record: AsyncRecord = {
      id,
      model: name,
      ...(ref !== undefined ? { ref } : {}),
      input: {
        key: submission.inputKey,
        size,
        contentType: submission.contentType ?? 'application/json',
        ...(submission.headerLength !== undefined ? { headerLength: submission.headerLength } : {}),
      },
      status: 'pending',
      createdAt: new Date(now).toISOString(),
      deadline: new Date(now + this.settings.queueMs + this.settings.timeoutMs).toISOString(),
      attempts: 0,
    };
    // A fresh UUID cannot collide; create-only all the same, so nothing is ever overwritten.
    if (!(await createJson(this.store, recordKey(id), record, { readExisting: false })).created)
      throw new MaasError('internal', `async request ${id} already exists`);
    try {
      await this.dispatchId(id);
    } catch (e) {
      const { status, body } = errorToHttp(e);
      await this.finish(id, undefined, { httpStatus: status, error: body }).catch(() => undefined);
      throw e;
    }
    return record;
  }

  /**
   * The worker: runs request `id` once. `remainingMs` is the time the function has left (Lambda);
   * the recorded deadline keeps a margin inside it. Returns the final record, or undefined when
   * this delivery had nothing to do (unknown id, already claimed or finished).
   */
  async run(id: string, options: { remainingMs?: number } = {}): Promise<AsyncRecord | undefined> {
    const now = this.now();
    const budget = Math.min(
      this.settings.timeoutMs,
      options.remainingMs === undefined ? Infinity : options.remainingMs - DEADLINE_MARGIN_MS,
    );
    const claim = await updateJson<AsyncRecord>(this.store, recordKey(id), (current) => {
      if (!current) return KEEP;
      const doc = current.doc;
      if (doc.status === 'pending' && Date.parse(doc.deadline) > now)
        return {
          ...doc,
          status: 'running',
          startedAt: new Date(now).toISOString(),
          deadline: new Date(now + Math.max(budget, 0)).toISOString(),
          attempts: doc.attempts + 1,
        };
      // A delivery after the deadline (a lost run, or one that never started): fail, never retry.
      if ((doc.status === 'pending' || doc.status === 'running') && Date.parse(doc.deadline) <= now)
        return { ...doc, ...timedOut(doc, now) };
      return KEEP;
    });
    const record = claim.doc;
    if (!claim.written || !record || record.status !== 'running') return undefined;
    const attempt = record.attempts;
    const deadline = Date.parse(record.deadline);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), Math.max(deadline - this.now(), 0));
    });
    try {
      const outcome = await Promise.race([this.execute(record, deadline), expired]);
      if (outcome === 'expired') return await this.finish(id, attempt, timedOut(record, this.now()));
      return await this.finish(id, attempt, outcome);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The status of request `id` (404 when unknown); an expired one is failed on the way. */
  async status(id: string): Promise<AsyncStatusView> {
    let record = await this.read(id);
    const now = this.now();
    if ((record.status === 'pending' || record.status === 'running') && Date.parse(record.deadline) <= now)
      record =
        (await this.finish(
          id,
          record.status === 'running' ? record.attempts : undefined,
          timedOut(record, now),
        )) ?? record;
    const view: AsyncStatusView = {
      id: record.id,
      model: record.model,
      ...(record.ref !== undefined ? { ref: record.ref } : {}),
      status: record.status,
      createdAt: record.createdAt,
      ...(record.startedAt ? { startedAt: record.startedAt } : {}),
      ...(record.finishedAt ? { finishedAt: record.finishedAt } : {}),
      deadline: record.deadline,
      input: { key: record.input.key, size: record.input.size },
      ...(record.version !== undefined ? { version: record.version } : {}),
      ...(record.httpStatus !== undefined ? { httpStatus: record.httpStatus } : {}),
      ...(record.error ? { error: record.error } : {}),
    };
    const output = record.output;
    if (record.status !== 'succeeded' || !output) return view;
    if (output.headerLength === undefined && output.size <= this.settings.inlineBytes) {
      const { body } = await this.store.get(output.key);
      view.response = JSON.parse(body.toString('utf8'));
      return view;
    }
    view.output = {
      url: this.localOutputPath(id),
      contentType: output.contentType,
      size: output.size,
      ...(output.headerLength !== undefined ? { inferenceHeaderContentLength: output.headerLength } : {}),
    };
    if (this.store instanceof S3ObjectStore) {
      const expiresIn = this.settings.linkExpiresSeconds;
      view.output.url = await this.store.presignGet(output.key, {
        expiresIn,
        contentType: output.contentType,
      });
      view.output.expiresAt = new Date(now + expiresIn * 1000).toISOString();
    }
    return view;
  }

  /** A succeeded request's response body (the local download route; on S3 use the presigned link). */
  async readOutput(id: string): Promise<{ body: Readable } & AsyncBody> {
    const record = await this.read(id);
    if (record.status !== 'succeeded' || !record.output)
      throw new NotFoundError(`async request ${id} has no response (status ${record.status})`, { id });
    const { body } = await this.store.getStream(record.output.key);
    return { ...record.output, body };
  }

  /** Resolves when every in-process run has finished (tests, graceful shutdown). */
  idle(): Promise<void> {
    return this.runner.idle();
  }

  private async read(id: string): Promise<AsyncRecord> {
    if (!UUID.test(id)) throw new NotFoundError(`no async request ${id}`, { id });
    const found = await readJson<AsyncRecord>(this.store, recordKey(id));
    if (!found) throw new NotFoundError(`no async request ${id}`, { id });
    return found.doc;
  }

  private assertSize(size: number): void {
    if (size > this.settings.maxInputBytes)
      throw new PayloadTooLargeError(
        `the input (${size} bytes) is larger than the limit of ${this.settings.maxInputBytes} bytes (MAAS_ASYNC_MAX_INPUT_BYTES)`,
        { limit: this.settings.maxInputBytes, size },
      );
  }

  /** Reads, infers, stores the response; any failure becomes the record's error. */
  private async execute(record: AsyncRecord, deadline: number): Promise<Partial<AsyncRecord>> {
    try {
      const body = await this.readInput(record.input);
      const result = await this.inference.infer(record.model, record.ref, body, {
        contentType: record.input.contentType,
        ...(record.input.headerLength !== undefined
          ? { headerLength: String(record.input.headerLength) }
          : {}),
      });
      // Past the deadline the record is failed already: write no orphan response.
      if (this.now() >= deadline) return timedOut(record, this.now());
      const binary = result.headerLength !== undefined;
      const output: AsyncBody = {
        key: `${OUTPUTS_PREFIX}${record.id}.${binary ? 'bin' : 'json'}`,
        size: Buffer.byteLength(result.body),
        contentType: result.contentType,
        ...(binary ? { headerLength: result.headerLength } : {}),
      };
      // One writer per record (the claim), so a plain put; the record points at it only afterwards.
      await this.store.put(output.key, result.body, { contentType: result.contentType });
      return { version: result.version, output };
    } catch (e) {
      const { status, body } = errorToHttp(e);
      if (status >= 500) this.logger.error('async inference failed', { id: record.id, error: String(e) });
      return { httpStatus: status, error: body };
    }
  }

  /** The input as the core takes it: JSON as text, binary bodies as bytes; bounded while streaming. */
  private async readInput(input: AsyncBody): Promise<string | Buffer> {
    let stream: Readable;
    let size: number;
    try {
      ({ body: stream, size } = await this.store.getStream(input.key));
    } catch (e) {
      if (e instanceof ObjectNotFoundError)
        throw new NotFoundError(`the input ${input.key} is gone (deleted after submission?)`, {
          inputKey: input.key,
        });
      throw e;
    }
    if (size > this.settings.maxInputBytes) {
      stream.destroy();
      this.assertSize(size);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      // Replaced since submission with something bigger than announced: stop reading now.
      if (total > this.settings.maxInputBytes) {
        stream.destroy();
        this.assertSize(total);
      }
      chunks.push(chunk);
    }
    const bytes = Buffer.concat(chunks, total);
    return input.headerLength === undefined ? bytes.toString('utf8') : bytes;
  }

  /**
   * Records the outcome if the record is still the one this run claimed (`attempt`; undefined:
   * whatever non-final state it is in): a late run never overwrites a timeout, nor the reverse.
   */
  private async finish(
    id: string,
    attempt: number | undefined,
    outcome: Partial<AsyncRecord>,
  ): Promise<AsyncRecord | undefined> {
    const finishedAt = new Date(this.now()).toISOString();
    const result = await updateJson<AsyncRecord>(this.store, recordKey(id), (current) => {
      const doc = current?.doc;
      if (!doc || doc.status === 'succeeded' || doc.status === 'failed') return KEEP;
      if (attempt !== undefined && (doc.status !== 'running' || doc.attempts !== attempt)) return KEEP;
      const failed = outcome.error !== undefined;
      return { ...doc, ...outcome, status: failed ? 'failed' : 'succeeded', finishedAt };
    });
    return result.doc;
  }
}

function recordKey(id: string): string {
  return `${REQUESTS_PREFIX}${id}.json`;
}

/** The failure of a request that did not start or finish in time. */
function timedOut(record: AsyncRecord, now: number): Partial<AsyncRecord> {
  const started = record.status === 'running';
  return {
    status: 'failed',
    finishedAt: new Date(now).toISOString(),
    httpStatus: 504,
    error: {
      error: started
        ? `inference did not finish before its deadline ${record.deadline} (the worker's time limit, MAAS_ASYNC_TIMEOUT_SECONDS)`
        : `the request was not started before its deadline ${record.deadline} (MAAS_ASYNC_QUEUE_SECONDS)`,
      code: 'deadline_exceeded',
    },
  };
}
