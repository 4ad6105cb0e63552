import { request } from 'node:http';
import { BroadcastChannel, isMainThread, threadId } from 'node:worker_threads';
import { logger } from './logger';

/**
 * Work a function container does before it goes away (predict: the last capture flush).
 *
 * Lambda freezes a container between invocations, so timers do not run there, and it only tells
 * the runtime it is shutting down (SIGTERM, then 500 ms before SIGKILL) when an extension is
 * registered. {@link onShutdown} therefore registers an internal extension through the Extensions
 * API (`POST /2020-01-01/extension/register`, `events: []`: no events to poll for, its only use
 * is to turn the SIGTERM on) and runs the hooks on SIGTERM. Under `npm start` the handlers run in
 * serverless-offline worker threads, which get no signal before they are terminated: there the
 * hooks answer a drain request on the {@link LOCAL_DRAIN_CHANNEL} broadcast channel, which
 * `npm start` sends on stop (`scripts/local-dev/drain.ts`).
 */
export type ShutdownHook = () => Promise<void>;

/** The broadcast channel `npm start` asks its handler threads to drain on. */
export const LOCAL_DRAIN_CHANNEL = 'maas:drain';

/** Messages on {@link LOCAL_DRAIN_CHANNEL}. */
export type DrainMessage =
  | { type: 'drain'; id: string }
  | { type: 'ack'; id: string; thread: number }
  | { type: 'drained'; id: string; thread: number };

/** The name the internal extension registers under. */
export const EXTENSION_NAME = 'maas-shutdown';

const hooks: ShutdownHook[] = [];
let installed = false;

/**
 * Runs `hook` when this container shuts down (Lambda SIGTERM, or `npm start` stopping). Hooks
 * must be quick: Lambda leaves the runtime 500 ms.
 *
 * @example
 * ```ts
 * onShutdown(() => capture.close());
 * ```
 */
export function onShutdown(hook: ShutdownHook, env: NodeJS.ProcessEnv = process.env): void {
  hooks.push(hook);
  if (installed) return;
  installed = true;
  if (env.IS_OFFLINE) listenForLocalDrain();
  else if (env.AWS_LAMBDA_RUNTIME_API) {
    registerInternalExtension(env.AWS_LAMBDA_RUNTIME_API);
    process.once('SIGTERM', () => {
      void runHooks().finally(() => process.exit(0));
    });
  }
}

/**
 * Runs every registered hook once (errors are logged, never thrown).
 *
 * @example
 * ```ts
 * await runShutdownHooks();
 * ```
 */
export async function runShutdownHooks(): Promise<void> {
  await runHooks();
}

async function runHooks(): Promise<void> {
  await Promise.all(
    hooks.map((h) => h().catch((e: unknown) => logger.warn('shutdown hook failed', { error: String(e) }))),
  );
}

/**
 * Registers an internal extension with no events: with an extension registered, Lambda sends
 * the runtime SIGTERM before shutting the container down. The request goes out while the
 * handler module loads (the init phase, before the runtime's first `next`); the event poll it
 * is followed by never answers (no events) and holds no reference on the event loop.
 */
export function registerInternalExtension(runtimeApi: string): void {
  const base = `http://${runtimeApi}/2020-01-01/extension`;
  const body = JSON.stringify({ events: [] });
  const req = request(
    `${base}/register`,
    {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'Lambda-Extension-Name': EXTENSION_NAME,
      },
    },
    (res) => {
      res.resume();
      const id = res.headers['lambda-extension-identifier'];
      if (res.statusCode !== 200 || typeof id !== 'string') {
        logger.warn('shutdown extension not registered: the last capture flush may be lost', {
          status: res.statusCode,
        });
        return;
      }
      const next = request(`${base}/event/next`, {
        method: 'GET',
        headers: { 'Lambda-Extension-Identifier': id },
      });
      next.on('socket', (s) => s.unref());
      next.on('error', () => undefined);
      next.end();
    },
  );
  req.on('socket', (s) => s.unref());
  req.on('error', (e) => logger.warn('shutdown extension not registered', { error: String(e) }));
  req.end(body);
}

function listenForLocalDrain(): void {
  const channel = new BroadcastChannel(LOCAL_DRAIN_CHANNEL);
  // Unref'd: listening must not keep a handler thread alive.
  channel.unref();
  channel.onmessage = (event) => {
    const message = (event as { data?: DrainMessage }).data;
    if (message?.type !== 'drain') return;
    const thread = isMainThread ? 0 : threadId;
    channel.postMessage({ type: 'ack', id: message.id, thread } satisfies DrainMessage);
    void runHooks().finally(() =>
      channel.postMessage({ type: 'drained', id: message.id, thread } satisfies DrainMessage),
    );
  };
}
