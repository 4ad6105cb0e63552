// @ts-check
'use strict';
/**
 * Local serverless plugin for `npm start` (`sls offline start`): runs the real handlers on the
 * embedded file store with no AWS account.
 *
 * - before the servers start: refuses a non-loopback MAAS_HOST without MAAS_API_KEY (and warns
 *   loudly with one: predict and generate routes stay open, as with predictAuth=none);
 *   gives the handlers the local environment (MAAS_STORE defaults to
 *   `file://<service>/.maas`, MAAS_* / S3_* settings come from the shell, CloudFormation-only
 *   values are dropped) and registers + promotes the demo model on first start;
 * - starts the local upload server (scripts/local-dev/upload-server.ts, port MAAS_UPLOAD_PORT)
 *   that upload tickets and upload-session parts point to on the file store: the emulated API
 *   Gateway refuses bodies over 10 MB, this server streams any size into the store;
 * - once they listen: polls `incoming/` and invokes the register-version function with an S3
 *   ObjectCreated event for each dropped file (same handler code path as the S3 trigger), and
 *   prints one `maas: ready` line;
 * - the front server (scripts/local-dev/front-server.ts) listens on MAAS_HOST:MAAS_PORT: it streams the
 *   text-generation routes from the real generate handler in this process (serverless-offline can
 *   neither stream nor serve Function URLs) and proxies everything else, byte for byte, to
 *   serverless-offline, moved to an internal port on 127.0.0.1 (with its Lambda invoke port).
 * - on shutdown (SIGINT/SIGTERM): stops the poller and asks the handler threads to drain (predict
 *   writes its pending captures) before serverless-offline terminates them.
 *
 * The monitor's schedule event is run by serverless-offline itself (MAAS_MONITOR_SCHEDULE may
 * shorten the period locally). The logic lives in scripts/local-dev/*.ts, loaded through tsx's
 * scoped `require` (no global hook).
 */
const path = require('node:path');
const { randomBytes } = require('node:crypto');

class LocalDevPlugin {
  /**
   * @param {any} serverless the framework instance
   * @param {Record<string, unknown>} options CLI options
   * @param {{ log: { notice: (m: string) => void, warning: (m: string) => void } }} [utils]
   */
  constructor(serverless, options, utils) {
    this.serverless = serverless;
    this.options = options;
    this.log = utils?.log ?? { notice: console.log, warning: console.warn };
    /** @type {{ stop: () => Promise<void> } | undefined} */
    this.poller = undefined;
    /** @type {{ url: string, close: () => Promise<void> } | undefined} */
    this.uploads = undefined;
    this.storeUrl = '';
    /** @type {{ close: () => Promise<void> } | undefined} */
    this.front = undefined;
    /** Where users connect (MAAS_HOST, MAAS_PORT): the front server; read before serverless-offline's options move. */
    this.public = this.offlineOptions();
    this.internalHttpPort = 0;
    if (serverless.processedInput?.commands?.[0] === 'offline') this.useOwnWorkFolder();
    this.hooks = {
      // `initialize` runs before every other plugin's lifecycle hooks: a refusal there stops
      // the start before serverless-esbuild bundles and starts its file watchers (which would
      // otherwise keep the failed process alive).
      initialize: async () => {
        this.checkExposure();
        await this.moveOfflineInside();
      },
      'before:offline:start:init': () => this.prepare(),
      'after:offline:start:init': () => this.started(),
      'before:offline:start:end': () => this.stop(),
    };
  }

  /**
   * Bundles for `npm start` go to `<MAAS_ESBUILD_DIR>/offline`, not to the `package` folder: a
   * `npm run package` meanwhile deletes its work folder when done, which would pull the running
   * server's handlers away ("Cannot find module …/handler.ts" on every request). Set here, in the
   * constructor, because serverless-esbuild reads its options in its own `initialize` hook.
   */
  useOwnWorkFolder() {
    const custom = this.serverless.service.custom ?? {};
    if (!custom.esbuild) return;
    custom.esbuild.outputWorkFolder = path.join(String(custom.esbuildWorkRoot ?? '.esbuild'), 'offline');
  }

  /** @returns {typeof import('../scripts/local-dev/index')} */
  core() {
    const tsx = require('tsx/cjs/api');
    return tsx.require(path.join(__dirname, '../scripts/local-dev/index.ts'), __filename);
  }

  /**
   * serverless-offline's own HTTP server (and with it its Lambda invoke port: one host setting
   * for both) goes to a free internal port on 127.0.0.1; the front server takes the public one.
   * Its options are merged when it starts (`offline:start:init`), after this hook.
   */
  async moveOfflineInside() {
    if (this.serverless.processedInput?.commands?.[0] !== 'offline') return;
    const custom = this.serverless.service.custom ?? {};
    custom['serverless-offline'] ??= {};
    this.internalHttpPort = await this.core().freeLoopbackPort();
    custom['serverless-offline'].host = '127.0.0.1';
    custom['serverless-offline'].httpPort = this.internalHttpPort;
    delete this.options.host;
    delete this.options.httpPort;
  }

  offlineOptions() {
    const custom = this.serverless.service.custom?.['serverless-offline'] ?? {};
    const host = String(this.options.host ?? custom.host ?? '127.0.0.1');
    const httpPort = Number(this.options.httpPort ?? custom.httpPort ?? 3000);
    const lambdaPort = Number(this.options.lambdaPort ?? custom.lambdaPort ?? 3002);
    // A wildcard bind address is reachable on loopback; connect there.
    const connectHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    return { host, httpPort, lambdaPort, connectHost };
  }

  /**
   * serverless-offline binds its unauthenticated Lambda invoke port to the same host as the API
   * (it has no separate setting for it), so whether to listen at all is decided before it starts.
   */
  checkExposure() {
    if (this.serverless.processedInput?.commands?.[0] !== 'offline') return;
    const { host, lambdaPort } = this.public;
    // A typo in MAAS_DEMO or MAAS_INCOMING_POLL_MS stops the start here, with the setting named.
    this.core().localDevSettings(process.env);
    const exposure = this.core().exposureCheck(host, lambdaPort, process.env);
    if (exposure.refusal) throw new Error(exposure.refusal);
    for (const line of exposure.warnings) this.log.warning(line);
  }

  async prepare() {
    const core = this.core();
    const provider = this.serverless.service.provider;
    provider.environment = core.localEnvironment(
      provider.environment ?? {},
      process.env,
      this.serverless.serviceDir,
    );
    for (const name of this.serverless.service.getAllFunctions()) {
      const fn = this.serverless.service.getFunction(name);
      if (fn.environment) fn.environment = core.localFunctionEnvironment(fn.environment, process.env);
    }
    this.storeUrl = provider.environment.MAAS_STORE;
    if (this.storeUrl.startsWith('file:')) {
      // Started before the handlers so that the first ticket already points to a live server.
      // Signs the file store's download links (the stand-in for presigned GETs): new per start.
      const linkSecret = randomBytes(32).toString('hex');
      this.uploads = await core.startUploadServer({
        storeUrl: this.storeUrl,
        host: this.public.host,
        port: core.localDevSettings(process.env).uploadPort,
        linkSecret,
        log: (line) => this.log.warning(line),
      });
      provider.environment.MAAS_LOCAL_UPLOAD_URL = this.uploads.url;
      provider.environment.MAAS_LOCAL_LINK_SECRET = linkSecret;
    }
    const seed = await core.seedLocalStore(this.storeUrl, process.env);
    if (seed.seeded && seed.version) {
      this.log.notice(
        `maas: registered demo model ${seed.version.name} version ${seed.version.version} as production`,
      );
    }
  }

  async started() {
    await this.serveDashboard();
    const { host, httpPort, lambdaPort } = this.public;
    const generate = this.serverless.service.getFunction('generate');
    this.front = await this.core().startLocalGateway({
      host,
      port: httpPort,
      upstreamPort: this.internalHttpPort,
      environment: { ...this.serverless.service.provider.environment, ...(generate.environment ?? {}) },
      timeoutSeconds: Number(generate.timeout ?? 900),
    });
    const fn = this.serverless.service.getFunction('registerVersion');
    this.poller = this.core().startIncomingWatcher({
      storeUrl: this.storeUrl,
      lambdaEndpoint: `http://127.0.0.1:${lambdaPort}`,
      functionName: fn.name,
      intervalMs: this.core().localDevSettings(process.env).incomingPollMs,
      log: (line) => this.log.notice(line),
    });
    const key = process.env.MAAS_API_KEY
      ? 'mutating routes need x-api-key'
      : 'no API key: mutating routes are open to this host';
    this.log.notice(
      `maas: ready on http://${host}:${httpPort} (store ${this.storeUrl}; ${key}; ${this.uploads ? `uploads via ${this.uploads.url}; ` : ''}drop .onnx files into incoming/<name>/)`,
    );
  }

  /**
   * The web dashboard (ui/) at `/` and `/ui/*` of serverless-offline's own HTTP server (hapi), so
   * it shares the API's origin. Local only: the dashboard is no route of the deployed stack.
   */
  async serveDashboard() {
    const offline = this.serverless.pluginManager.plugins.find(
      (/** @type {any} */ p) => p.constructor?.name === 'ServerlessOffline',
    );
    const server = offline?.internals?.().getApiGatewayServer();
    if (!server)
      return this.log.warning('maas: no serverless-offline HTTP server found: dashboard not served');
    const tsx = require('tsx/cjs/api');
    /** @type {typeof import('../ui/assets')} */
    const ui = tsx.require(path.join(__dirname, '../ui/assets.ts'), __filename);
    const assets = await ui.dashboardAssets({ esbuild: require('esbuild') });
    const handler = (/** @type {any} */ request, /** @type {any} */ h) => {
      const asset = assets.get(request.path);
      if (!asset) return h.response({ error: `no file ${request.path}`, code: 'not_found' }).code(404);
      return h.response(asset.body).type(asset.contentType).header('cache-control', 'no-cache');
    };
    server.route({ method: 'GET', path: '/', handler });
    server.route({ method: 'GET', path: '/ui/{file}', handler });
  }

  async stop() {
    await this.front?.close();
    await this.poller?.stop();
    await this.uploads?.close();
    const { drained, timedOut } = await this.core().drainLocalHandlers();
    if (drained > 0 || timedOut > 0)
      this.log.notice(
        `maas: drained ${drained} handler thread(s)${timedOut ? `, ${timedOut} timed out` : ''}`,
      );
  }
}

module.exports = LocalDevPlugin;
