import { createHash } from 'node:crypto';
import { type Readable, Transform } from 'node:stream';
import { IntegrityError, InvalidArgumentError } from '../errors';
import type { ObjectStore } from '../store';
import { layout } from './layout';
import type { BundleFile, BundleFileRole, ModelVersion } from './types';

/**
 * Model bundles: an ONNX graph plus the external data files it references (what
 * `torch.onnx.export(..., external_data=True)` writes) and a few well-known companion files.
 * This module holds the rules every layer shares: which names a bundle may contain, what role
 * each file plays, and the one digest a bundle version is known by.
 */

/**
 * Files that may ride along with a graph without being referenced by it (role `companion`):
 * what a tokenizer or a generation loop reads beside the model. Anything else that is not the
 * graph must be external data the graph references.
 */
export const COMPANION_FILES: readonly string[] = [
  'tokenizer.json',
  'tokenizer_config.json',
  'generation_config.json',
  'config.json',
  'special_tokens_map.json',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
];

/** Largest companion file accepted (they are parsed in memory by whoever reads them). */
export const COMPANION_MAX_BYTES = 64 * 1024 * 1024;

/** Longest bundle file name in UTF-8 bytes (what common file systems allow for one name). */
export const BUNDLE_FILE_NAME_MAX_BYTES = 255;

/** The name a single-file version's one file gets when it is listed as a bundle file. */
export const SINGLE_FILE_NAME = 'model.onnx';

/**
 * Why `name` is not a plain bundle file name, or undefined when it is one. A plain name is
 * 1..255 UTF-8 bytes with no `/`, `\`, `..`, NUL or other control character, no drive letter
 * (`C:`), and is neither `.` nor `..`: written under any folder it stays inside that folder.
 *
 * @example
 * ```ts
 * bundleFileNameProblem('model.onnx.data'); // undefined
 * bundleFileNameProblem('../etc/passwd');   // 'contains a path separator'
 * ```
 */
export function bundleFileNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'is empty';
  if (Buffer.byteLength(name, 'utf8') > BUNDLE_FILE_NAME_MAX_BYTES)
    return `is longer than ${BUNDLE_FILE_NAME_MAX_BYTES} bytes`;
  if (name.includes('\0')) return 'contains a NUL character';
  if (name.includes('/') || name.includes('\\')) return 'contains a path separator';
  if (name.includes('..') || name === '.') return 'is or contains a relative path component';
  if (/^[A-Za-z]:/.test(name)) return 'starts with a drive letter';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'contains a control character';
  // With the u flag a surrogate only matches when unpaired: such a name has no UTF-8 form.
  if (/[\uD800-\uDFFF]/u.test(name)) return 'is not valid Unicode';
  return undefined;
}

/**
 * Throws {@link InvalidArgumentError} (400) unless `name` is a plain bundle file name
 * ({@link bundleFileNameProblem}).
 *
 * @example
 * ```ts
 * assertBundleFileName('model.onnx'); // ok
 * assertBundleFileName('C:model.bin'); // throws: starts with a drive letter
 * ```
 */
export function assertBundleFileName(name: unknown): asserts name is string {
  const problem = bundleFileNameProblem(name);
  if (problem !== undefined)
    throw new InvalidArgumentError(`bundle file name ${JSON.stringify(name)} ${problem}`, {
      field: 'files',
      file: typeof name === 'string' ? name : String(name),
    });
}

/**
 * Throws {@link InvalidArgumentError} (400) unless every name is plain and no two are equal,
 * case-insensitively too: a case-insensitive file system (macOS, Windows) would lay the two
 * out as one file, and which bytes end up there would depend on the order of writes.
 *
 * @example
 * ```ts
 * assertBundleFileNames(['model.onnx', 'model.onnx.data']); // ok
 * assertBundleFileNames(['w.bin', 'W.bin']);                 // throws: duplicate
 * ```
 */
export function assertBundleFileNames(names: Iterable<string>): void {
  const seen = new Map<string, string>();
  for (const name of names) {
    assertBundleFileName(name);
    const folded = name.normalize('NFC').toLowerCase();
    const earlier = seen.get(folded);
    if (earlier !== undefined)
      throw new InvalidArgumentError(
        earlier === name
          ? `bundle file name ${JSON.stringify(name)} appears twice`
          : `bundle file names ${JSON.stringify(earlier)} and ${JSON.stringify(name)} differ only in case`,
        { field: 'files', file: name },
      );
    seen.set(folded, name);
  }
}

/**
 * The role a file of this name plays in a bundle: `*.onnx` is the graph, an allowlisted name
 * ({@link COMPANION_FILES}) a companion, anything else external data (which the graph must
 * then reference).
 *
 * @example
 * ```ts
 * bundleFileRole('model.onnx');     // 'graph'
 * bundleFileRole('tokenizer.json'); // 'companion'
 * bundleFileRole('weights.bin');    // 'data'
 * ```
 */
export function bundleFileRole(name: string): BundleFileRole {
  if (name.toLowerCase().endsWith('.onnx')) return 'graph';
  if (COMPANION_FILES.includes(name)) return 'companion';
  return 'data';
}

/**
 * Store key of a bundle file's bytes: the graph under `blobs/sha256/{hex}.onnx` (like a
 * single-file model, so the same graph bytes share one blob), other files under `….bin`.
 *
 * @example
 * ```ts
 * bundleBlobKey('ab…', 'data'); // 'blobs/sha256/ab….bin'
 * ```
 */
export function bundleBlobKey(sha256: string, role: BundleFileRole): string {
  return role === 'graph' ? layout.blob(sha256) : layout.dataBlob(sha256);
}

/**
 * The digest of a bundle: sha256 of its files' `name\tsize\tsha256\n` lines sorted by name
 * (UTF-8 byte order), so it names the exact set of bytes whatever order the files came in.
 * A bundle version's `sha256`.
 *
 * @example
 * ```ts
 * const digest = bundleDigest([{ name: 'model.onnx', size: 120, sha256: 'ab…' }, …]);
 * ```
 */
export function bundleDigest(files: readonly Pick<BundleFile, 'name' | 'size' | 'sha256'>[]): string {
  const lines = files
    .map((f) => ({ key: Buffer.from(f.name, 'utf8'), line: `${f.name}\t${f.size}\t${f.sha256}\n` }))
    .sort((a, b) => Buffer.compare(a.key, b.key));
  const hash = createHash('sha256');
  for (const { line } of lines) hash.update(line, 'utf8');
  return hash.digest('hex');
}

/**
 * Whether a version is a bundle (several files) rather than one `.onnx` file.
 *
 * @example
 * ```ts
 * if (isBundle(version)) await materializeFolder(version); else await loadFile(version.blobKey);
 * ```
 */
export function isBundle(version: Pick<ModelVersion, 'files'>): boolean {
  return version.files !== undefined && version.files.length > 0;
}

/**
 * Every file of a version, graph first: a bundle's `files`, or for a single-file version one
 * synthesized entry `model.onnx` (its blob, size and sha256), so readers handle both alike.
 *
 * @example
 * ```ts
 * for (const file of versionFiles(version)) await download(file.blobKey, path.join(dir, file.name));
 * ```
 */
export function versionFiles(
  version: Pick<ModelVersion, 'files' | 'blobKey' | 'size' | 'sha256'>,
): BundleFile[] {
  if (isBundle(version)) return [...(version.files as BundleFile[])];
  return [
    {
      name: SINGLE_FILE_NAME,
      size: version.size,
      sha256: version.sha256,
      blobKey: version.blobKey,
      role: 'graph',
    },
  ];
}

/**
 * A stored file's bytes as a stream that fails with {@link IntegrityError} (instead of ending)
 * when they do not hash to the manifest's sha256 and size.
 *
 * @example
 * ```ts
 * await pipeline(await verifiedFileStream(store, version, file), createWriteStream(dest));
 * ```
 */
export async function verifiedFileStream(
  store: ObjectStore,
  version: ModelVersion,
  file: BundleFile,
): Promise<Readable> {
  const { body } = await store.getStream(file.blobKey);
  const hash = createHash('sha256');
  let size = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
    flush(done) {
      const actual = hash.digest('hex');
      if (actual !== file.sha256 || size !== file.size)
        done(new IntegrityError(version.name, version.version, file.sha256, actual));
      else done();
    },
  });
  body.on('error', (e) => check.destroy(e));
  return body.pipe(check);
}
