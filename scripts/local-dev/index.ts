/**
 * What `npm start` adds around serverless-offline (called by plugins/local-dev.js): the local
 * environment of the handlers, the demo model on first start, and the `incoming/` watcher.
 */
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import * as path from 'node:path';
import { type SeedResult, seedDemoModel } from '../../dev/demo/iris';
import { installLambdaStreamingShim, type StreamingHandler } from '../../functions/generate/local-server';
import { ModelRegistry } from '../../shared/registry';
import { readSettings } from '../../shared/settings';
import { createObjectStore } from '../../shared/store';
import { type FrontServer, startFrontServer } from './front-server';
import { IncomingPoller, offlineInvoker } from './incoming-poller';

export { type DrainOptions, drainLocalHandlers } from './drain';
export { type ExposureDecision, exposureCheck, isLoopbackHost } from './exposure';
export { type FrontServer, type FrontServerOptions, startFrontServer } from './front-server';
export { startUploadServer, type UploadServer, type UploadServerOptions } from './upload-server';

/** The settings of `npm start` itself (the handlers read theirs in their own runtime). */
export interface LocalDevSettings {
  /** `MAAS_DEMO` (default true): register and promote the demo model on first start. */
  demo: boolean;
  /** `MAAS_INCOMING_POLL_MS` (default 1000): how often `incoming/` is listed. */
  incomingPollMs: number;
  /**
   * `MAAS_UPLOAD_PORT` (default 0: a free port): port of the local upload server, on the API's
   * host. Tickets carry its full URL, so only a firewall or port mapping needs a fixed one.
   */
  uploadPort: number;
}

/**
 * Reads the `npm start` settings from the shell through `shared/settings.ts`; an invalid one
 * throws `MisconfiguredError`, which stops `npm start` before anything listens.
 *
 * @example
 * ```ts
 * const { incomingPollMs } = localDevSettings(process.env);
 * ```
 */
export function localDevSettings(shell: NodeJS.ProcessEnv): LocalDevSettings {
  return readSettings(
    (r) => ({
      demo: r.getBooleanFromEnv({ key: 'MAAS_DEMO', defaultValue: true }),
      incomingPollMs: r.getNumberFromEnv({
        key: 'MAAS_INCOMING_POLL_MS',
        defaultValue: 1000,
        min: 10,
        integer: true,
      }),
      uploadPort: r.getNumberFromEnv({
        key: 'MAAS_UPLOAD_PORT',
        defaultValue: 0,
        min: 0,
        max: 65535,
        integer: true,
      }),
    }),
    shell,
  );
}

/** Environment variables passed from the shell to the local handlers as they are. */
const PASSED_THROUGH = /^(MAAS_|S3_|POWERTOOLS_|AWS_SDK_JS_)/;

/** The configured values that are plain strings or numbers (CloudFormation-only ones are objects here). */
function plainValues(configured: Record<string, unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(configured))
    if (typeof v === 'string' || typeof v === 'number') env[k] = String(v);
  return env;
}

/**
 * The environment the local handlers get: the configured one, minus values only CloudFormation
 * can resolve (they are objects here), plus the local store and every `MAAS_*`/`S3_*` setting of
 * the shell. `MAAS_STORE` defaults to the file store in `<serviceDir>/.maas`.
 *
 * @example
 * ```ts
 * const env = localEnvironment(provider.environment, process.env, '/work/app');
 * // env.MAAS_STORE === 'file:///work/app/.maas' (unless the shell sets MAAS_STORE)
 * ```
 */
export function localEnvironment(
  configured: Record<string, unknown>,
  shell: NodeJS.ProcessEnv,
  serviceDir: string,
): Record<string, string> {
  const env = plainValues(configured);
  for (const [k, v] of Object.entries(shell)) if (PASSED_THROUGH.test(k) && v !== undefined) env[k] = v;
  env.MAAS_STORE = shell.MAAS_STORE ?? `file://${path.join(serviceDir, '.maas')}`;
  env.MAAS_API_KEY = shell.MAAS_API_KEY ?? '';
  // serverless-offline sets AWS_LAMBDA_FUNCTION_NAME, which would make the monitor publish to
  // CloudWatch; locally its metrics go to files unless the shell says otherwise.
  env.MAAS_METRICS_SINK = shell.MAAS_METRICS_SINK ?? 'local';
  // Registry events locally: the webhook the shell sets (MAAS_EVENT_WEBHOOK_URL/SECRET), not the stack's bus.
  env.MAAS_EVENT_BUS = shell.MAAS_EVENT_BUS ?? '';
  return env;
}

/**
 * A function's own environment for local runs: CloudFormation-only values dropped, and no
 * `MAAS_OPTIMIZE_WORKER_FUNCTION` (unless the shell sets it) so optimize jobs run in-process
 * instead of through a Lambda invoke that needs AWS.
 *
 * @example
 * ```ts
 * fn.environment = localFunctionEnvironment(fn.environment ?? {}, process.env);
 * ```
 */
export function localFunctionEnvironment(
  configured: Record<string, unknown>,
  shell: NodeJS.ProcessEnv,
): Record<string, string> {
  const env = plainValues(configured);
  if (shell.MAAS_OPTIMIZE_WORKER_FUNCTION)
    env.MAAS_OPTIMIZE_WORKER_FUNCTION = shell.MAAS_OPTIMIZE_WORKER_FUNCTION;
  else delete env.MAAS_OPTIMIZE_WORKER_FUNCTION;
  return env;
}

/**
 * Registers and promotes the demo model unless the store already has it (or `MAAS_DEMO=false`).
 *
 * @example
 * ```ts
 * await seedLocalStore('file:///work/app/.maas', process.env);
 * ```
 */
export async function seedLocalStore(storeUrl: string, shell: NodeJS.ProcessEnv): Promise<SeedResult> {
  if (!localDevSettings(shell).demo) return { seeded: false };
  return seedDemoModel(new ModelRegistry(createObjectStore(storeUrl, shell)));
}

/** Options of {@link startIncomingWatcher}. */
export interface IncomingWatcherOptions {
  storeUrl: string;
  /** serverless-offline's Lambda endpoint, e.g. `http://127.0.0.1:3002`. */
  lambdaEndpoint: string;
  /** Deployed name of the register-version function, e.g. `maas-dev-registerVersion`. */
  functionName: string;
  intervalMs?: number;
  log?: (line: string) => void;
}

/**
 * Starts the `incoming/` poller; call `stop()` on shutdown.
 *
 * @example
 * ```ts
 * const watcher = startIncomingWatcher({ storeUrl, lambdaEndpoint: 'http://127.0.0.1:3002', functionName: 'maas-dev-registerVersion' });
 * await watcher.stop();
 * ```
 */
export function startIncomingWatcher(options: IncomingWatcherOptions): IncomingPoller {
  const store = createObjectStore(options.storeUrl);
  const poller = new IncomingPoller(store, offlineInvoker(options.lambdaEndpoint, options.functionName), {
    ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
    ...(options.log ? { log: options.log } : {}),
  });
  poller.start();
  return poller;
}

/** Options of {@link startLocalGateway}. */
export interface LocalGatewayOptions {
  host: string;
  port: number;
  /** serverless-offline's internal HTTP port on 127.0.0.1. */
  upstreamPort: number;
  /** The generate function's local environment (provider's and its own), set on this process. */
  environment: Record<string, string>;
  /** The generate function's timeout in seconds. */
  timeoutSeconds: number;
}

/**
 * Starts the front server of `npm start` ({@link startFrontServer}) with the real generate
 * handler in this process. The handler reads its settings from `process.env` (as on Lambda), so
 * the function's local environment is set here first; it is the same one the offline handlers get.
 *
 * @example
 * ```ts
 * const front = await startLocalGateway({ host: '127.0.0.1', port: 3000, upstreamPort, environment, timeoutSeconds: 900 });
 * ```
 */
export async function startLocalGateway(options: LocalGatewayOptions): Promise<FrontServer> {
  for (const [k, v] of Object.entries(options.environment)) process.env[k] = v;
  installLambdaStreamingShim();
  // Loaded after the shim and the environment: the module builds its handler on import.
  const { handler } = require('../../functions/generate/lambda') as { handler: StreamingHandler };
  return startFrontServer({
    host: options.host,
    port: options.port,
    upstreamPort: options.upstreamPort,
    generate: handler,
    timeoutMs: options.timeoutSeconds * 1000,
  });
}

/**
 * A free TCP port on 127.0.0.1 (bound to 0, read, released): serverless-offline's internal HTTP
 * port, which it must be given as a number.
 *
 * @example
 * ```ts
 * const port = await freeLoopbackPort();
 * ```
 */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
