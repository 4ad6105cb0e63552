// @ts-check
'use strict';
/**
 * Bounds serverless-offline's Lambda instances per function under `npm start`.
 *
 * serverless-offline (14.x) starts a new worker thread — a fresh V8 isolate that loads the whole
 * bundled handler, onnxruntime included, and its own caches and model sessions — whenever a
 * request arrives while every instance of that function is busy, and keeps it for
 * `terminateIdleLambdaTime` (60 s). That is Lambda's scale-out, but on one machine it is ruinous:
 * 50 concurrent predict connections made ~50 isolates, the server went from ~1 GB to over 3 GB of
 * RSS in 30 s, and while the isolates started, requests waited for seconds and timed out.
 *
 * This plugin caps the instances of each function at `MAAS_OFFLINE_INSTANCES` (default 2): once
 * a function has that many, a new request goes to the least loaded instance that has already
 * served a request (its handler module is loaded), which handles it concurrently with the others
 * — the handlers are asynchronous and keep no per-request state in module scope. serverless-offline
 * copies the event into the worker synchronously in `runHandler` (right after `setEvent`), so
 * requests sharing an instance never see each other's events. An instance the idle cleaner
 * would terminate while it still serves a request is terminated once that request is done.
 *
 * The classes are patched on their prototypes (their pools are private fields), loaded from the
 * same files serverless-offline itself imports, so the patch applies to its instances.
 */
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

class OfflinePoolPlugin {
  /** @param {any} serverless */
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { 'before:offline:start:init': () => this.patch() };
  }

  async patch() {
    const raw = process.env.MAAS_OFFLINE_INSTANCES;
    const max = raw === undefined || raw === '' ? 2 : Number(raw);
    if (!Number.isInteger(max) || max < 1)
      throw new Error(`MAAS_OFFLINE_INSTANCES must be a whole number ≥ 1, got ${JSON.stringify(raw)}`);
    // Its entry (src/index.js), real path: module identity is the resolved file, as for its own imports.
    const entry = fs.realpathSync(require.resolve('serverless-offline', { paths: [process.cwd()] }));
    const lambdaDir = path.join(path.dirname(entry), 'lambda');
    const { default: Pool } = await import(pathToFileURL(path.join(lambdaDir, 'LambdaFunctionPool.js')).href);
    const { default: LambdaFunction } = await import(
      pathToFileURL(path.join(lambdaDir, 'LambdaFunction.js')).href
    );
    if (Pool.prototype.maasBounded) return;
    Pool.prototype.maasBounded = true;

    /** @type {Map<string, Set<any>>} function key → its live instances */
    const instances = new Map();
    /** @type {WeakMap<any, { inflight: number, ready: boolean, cleanupPending: boolean }>} */
    const stats = new WeakMap();
    const originalGet = Pool.prototype.get;
    const originalRun = LambdaFunction.prototype.runHandler;
    const originalCleanup = LambdaFunction.prototype.cleanup;

    /** @this {any} */
    Pool.prototype.get = function get(/** @type {string} */ key, /** @type {unknown} */ definition) {
      const live = instances.get(key) ?? new Set();
      instances.set(key, live);
      if (live.size >= max) {
        let best;
        for (const f of live) {
          const s = stats.get(f);
          if (s?.ready && !s.cleanupPending && (!best || s.inflight < (stats.get(best)?.inflight ?? 0)))
            best = f;
        }
        if (best) return best;
      }
      const f = originalGet.call(this, key, definition);
      if (!stats.has(f)) {
        stats.set(f, { inflight: 0, ready: false, cleanupPending: false });
        live.add(f);
      }
      return f;
    };

    /** @this {any} */
    LambdaFunction.prototype.runHandler = async function runHandler() {
      const s = stats.get(this) ?? { inflight: 0, ready: false, cleanupPending: false };
      stats.set(this, s);
      s.inflight++;
      try {
        return await originalRun.call(this);
      } finally {
        s.inflight--;
        s.ready = true;
        if (s.cleanupPending && s.inflight === 0) await originalCleanup.call(this);
      }
    };

    /** @this {any} */
    LambdaFunction.prototype.cleanup = async function cleanup() {
      for (const live of instances.values()) live.delete(this);
      const s = stats.get(this);
      if (s && s.inflight > 0) {
        s.cleanupPending = true; // still serving: terminate once its requests are done
        return;
      }
      return originalCleanup.call(this);
    };
  }
}

module.exports = OfflinePoolPlugin;
