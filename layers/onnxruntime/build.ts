/**
 * Builds the `onnxruntime` Lambda layer: onnxruntime-node with the native binaries of ONE
 * Lambda architecture only, plus its runtime dependency onnxruntime-common.
 *
 * Why a layer: the npm package ships binaries for every platform (~290 MB, more than Lambda's
 * 250 MB unzipped limit on its own); Linux x64 alone is ~47 MB. Bundlers cannot inline a native
 * addon, so the handlers keep `require('onnxruntime-node')` external and Lambda resolves it from
 * `/opt/nodejs/node_modules` (on NODE_PATH), where this layer's `nodejs/node_modules` lands.
 *
 * Reproducible: the input is the onnxruntime-node version pinned by package-lock.json (checked
 * against what is installed, so a stale node_modules fails loudly instead of shipping the wrong
 * runtime), the file selection is fixed, files are copied in sorted order and every mtime is
 * set to SOURCE_DATE_EPOCH (default 1980-01-01, the zip epoch), so the zip the framework makes
 * from the folder has the same bytes on every machine. No network access.
 *
 * Output: `layers/onnxruntime/.build/<arch>/nodejs/node_modules/{onnxruntime-node,onnxruntime-common}`
 * plus `.build/<arch>/layer.json` (versions, file list with sha256, total size). Skips work when
 * that manifest already matches the inputs.
 *
 * @example
 * ```sh
 * npx tsx layers/onnxruntime/build.ts --arch arm64
 * ```
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Lambda architecture names (as in serverless.yml `provider.architecture`). */
export type LambdaArchitecture = 'x86_64' | 'arm64';

/** Options of {@link buildOnnxRuntimeLayer}. */
export interface LayerBuildOptions {
  arch?: LambdaArchitecture;
  /** Repository root (where package.json, package-lock.json and node_modules are). */
  root?: string;
  /** Output folder; the layer content goes into `<outDir>/<arch>/nodejs/...`. */
  outDir?: string;
  /** Rebuild even if the manifest says the output is current. */
  force?: boolean;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

/** What a build produced (also written as `layer.json`). */
export interface LayerManifest {
  arch: LambdaArchitecture;
  packages: Record<string, string>;
  files: { path: string; size: number; sha256: string }[];
  totalBytes: number;
  /** sha256 over the file list: changes iff any layer byte or path changes. */
  contentHash: string;
}

const defaults = {
  arch: 'x86_64' as LambdaArchitecture,
  root: path.resolve(__dirname, '../..'),
  outDir: path.resolve(__dirname, '.build'),
  force: false,
  log: (line: string) => process.stderr.write(`${line}\n`),
};

/** Node's `process.arch` names of the binaries folder for each Lambda architecture. */
const NODE_ARCH: Record<LambdaArchitecture, string> = { x86_64: 'x64', arm64: 'arm64' };

/** Bumped whenever the selection below changes, so old build folders are rebuilt. */
const SELECTION_VERSION = 2;

/**
 * The files each package contributes: only what `require('onnxruntime-node')` loads at run time
 * (CommonJS dist with its `{"type":"commonjs"}` marker + the one platform's binaries), never type declarations, source maps, ESM
 * builds or the install script and its dependencies (adm-zip, global-agent: download-only).
 */
function selection(arch: LambdaArchitecture): Record<string, (rel: string) => boolean> {
  const bin = `bin/napi-v6/linux/${NODE_ARCH[arch]}/`;
  return {
    'onnxruntime-node': (rel) =>
      rel === 'package.json' ||
      rel === 'LICENSE' ||
      (rel.startsWith('dist/') && rel.endsWith('.js')) ||
      rel.startsWith(bin),
    'onnxruntime-common': (rel) =>
      rel === 'package.json' ||
      rel === 'LICENSE' ||
      (rel.startsWith('dist/cjs/') && (rel.endsWith('.js') || rel === 'dist/cjs/package.json')),
  };
}

/**
 * Builds (or confirms up to date) the layer folder for one architecture and returns its manifest.
 * Throws when the installed onnxruntime packages differ from package-lock.json.
 *
 * @example
 * ```ts
 * const manifest = buildOnnxRuntimeLayer({ arch: 'x86_64' });
 * console.log(manifest.totalBytes);
 * ```
 */
export function buildOnnxRuntimeLayer(
  options: LayerBuildOptions = {},
): LayerManifest & { dir: string; rebuilt: boolean } {
  const o = { ...defaults, ...options };
  if (!(o.arch in NODE_ARCH))
    throw new Error(`unknown architecture ${String(o.arch)} (expected x86_64 or arm64)`);
  const lock = JSON.parse(fs.readFileSync(path.join(o.root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string }>;
  };
  const packages: Record<string, string> = {};
  const select = selection(o.arch);
  for (const name of Object.keys(select)) {
    const pinned = lock.packages[`node_modules/${name}`]?.version;
    const installed = (
      JSON.parse(fs.readFileSync(path.join(o.root, 'node_modules', name, 'package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
    if (!pinned) throw new Error(`${name} is not in package-lock.json`);
    if (installed !== pinned)
      throw new Error(
        `node_modules/${name} is ${installed} but package-lock.json pins ${pinned}: run npm ci`,
      );
    packages[name] = pinned;
  }

  const dir = path.join(o.outDir, o.arch);
  const manifestPath = path.join(dir, 'layer.json');
  const inputKey = JSON.stringify({ SELECTION_VERSION, arch: o.arch, packages });
  if (!o.force && fs.existsSync(manifestPath)) {
    const previous = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as LayerManifest & {
      inputKey?: string;
    };
    if (
      previous.inputKey === inputKey &&
      previous.files.every((f) => fs.existsSync(path.join(dir, f.path)))
    ) {
      return { ...previous, dir, rebuilt: false };
    }
  }

  const epoch = new Date(Number(process.env.SOURCE_DATE_EPOCH ?? 315532800) * 1000);
  // Built beside the target and renamed into place, so a concurrent packager never zips half a layer.
  const final = dir;
  const work = `${dir}.tmp-${process.pid}`;
  fs.rmSync(work, { recursive: true, force: true });
  const files: LayerManifest['files'] = [];
  for (const [name, keep] of Object.entries(select)) {
    const from = path.join(o.root, 'node_modules', name);
    for (const rel of walk(from).filter(keep)) {
      const to = path.join(work, 'nodejs/node_modules', name, rel);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(from + path.sep + rel, to);
      fs.chmodSync(to, rel.endsWith('.node') || rel.endsWith('.so.1') ? 0o755 : 0o644);
      fs.utimesSync(to, epoch, epoch);
      const bytes = fs.readFileSync(to);
      files.push({
        path: `nodejs/node_modules/${name}/${rel}`,
        size: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
      });
    }
  }
  if (!files.some((f) => f.path.endsWith('onnxruntime_binding.node')))
    throw new Error(`no onnxruntime binding for linux/${NODE_ARCH[o.arch]} in node_modules/onnxruntime-node`);
  const totalBytes = files.reduce((sum, f) => sum + f.size, 0);
  const contentHash = createHash('sha256')
    .update(files.map((f) => `${f.path} ${f.sha256}`).join('\n'))
    .digest('hex');
  const manifest: LayerManifest = { arch: o.arch, packages, files, totalBytes, contentHash };
  // The manifest lives next to (not inside) nodejs/, but the framework zips the whole folder:
  // it is a few KB and documents what the layer holds.
  const workManifest = path.join(work, 'layer.json');
  fs.writeFileSync(workManifest, `${JSON.stringify({ ...manifest, inputKey }, null, 2)}\n`);
  fs.utimesSync(workManifest, epoch, epoch);
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(work, final);
  o.log(
    `onnxruntime layer (${o.arch}): ${files.length} files, ${(totalBytes / 1e6).toFixed(1)} MB in ${path.relative(o.root, dir)}`,
  );
  return { ...manifest, dir, rebuilt: true };
}

/** Relative paths of all files under `dir`, sorted (deterministic copy order). */
function walk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of fs
    .readdirSync(path.join(dir, prefix), { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...walk(dir, rel));
    else if (entry.isFile()) out.push(rel);
  }
  return out;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--arch');
  const arch = (at >= 0 ? args[at + 1] : process.env.MAAS_ARCH) ?? 'x86_64';
  const result = buildOnnxRuntimeLayer({ arch: arch as LambdaArchitecture, force: args.includes('--force') });
  if (!result.rebuilt)
    process.stderr.write(`onnxruntime layer (${result.arch}) is up to date in ${result.dir}\n`);
}
