// @ts-check
'use strict';
/**
 * Local serverless plugin: makes `sls package` work with no AWS account and no network, and keeps
 * the onnxruntime layer folder built before anything packages it.
 *
 * 1. Before packaging (also the first step of `deploy`), builds `layers/onnxruntime/.build/<arch>`
 *    with layers/onnxruntime/build.ts for the stack's `arch` param (a no-op when up to date).
 * 2. For `sls package` only, replaces the framework's `compareWithLastLayer` with a no-op. That
 *    step asks CloudFormation whether the deployed stack already holds an identical layer, to skip
 *    re-uploading it; it is the only AWS call `package` makes, and a package never uploads
 *    anything anyway. `deploy` keeps the real check.
 * 3. For `sls package` without AWS credentials, sets obviously fake ones in this process only
 *    (the framework's provider wants some to exist; nothing is sent with them).
 *
 * The TypeScript build module is loaded through tsx's scoped `require` (no global hook).
 */
const path = require('node:path');

class OfflinePackagePlugin {
  /**
   * @param {any} serverless the framework instance
   * @param {Record<string, unknown>} options CLI options
   * @param {{ log: { notice: (m: string) => void, info: (m: string) => void } }} [utils]
   */
  constructor(serverless, options, utils) {
    this.serverless = serverless;
    this.options = options;
    this.log = utils?.log ?? { notice: console.log, info: console.log };
    this.hooks = {
      'before:package:initialize': () => this.beforePackage(),
    };
  }

  /** The `arch` stack param as resolved by the framework (x86_64 unless --param="arch=arm64"). */
  architecture() {
    return this.serverless.service.provider.architecture ?? 'x86_64';
  }

  beforePackage() {
    const command = this.serverless.processedInput?.commands?.[0];
    const tsx = require('tsx/cjs/api');
    const build = /** @type {typeof import('../layers/onnxruntime/build')} */ (
      tsx.require(path.join(__dirname, '../layers/onnxruntime/build.ts'), __filename)
    );
    const manifest = build.buildOnnxRuntimeLayer({
      arch: this.architecture(),
      log: (line) => this.log.notice(line),
    });
    if (!manifest.rebuilt)
      this.log.info(
        `onnxruntime layer (${manifest.arch}) up to date: ${(manifest.totalBytes / 1e6).toFixed(1)} MB`,
      );

    if (command !== 'package') return;
    const compiler = this.serverless.pluginManager.plugins.find(
      (p) => typeof p?.compareWithLastLayer === 'function',
    );
    if (compiler) compiler.compareWithLastLayer = async () => undefined;
    if (!process.env.AWS_ACCESS_KEY_ID && !process.env.AWS_PROFILE) {
      process.env.AWS_ACCESS_KEY_ID = 'AKIAOFFLINEPACKAGE00';
      process.env.AWS_SECRET_ACCESS_KEY = 'offline-package-no-aws-calls-are-made';
    }
  }
}

module.exports = OfflinePackagePlugin;
