/**
 * A `.tar` archive as a bundle: what the `incoming/` trigger registers when a `.tar` is dropped
 * under `incoming/{name}/` (a single object is atomic; a folder of loose files is not).
 *
 * The archive is read as a stream, once: each entry becomes a `BundleSource` whose body is the
 * entry's bytes, handed to `ModelRegistry.registerBundle` in archive order (each one fully
 * consumed before the next header is read), so memory stays bounded whatever the sizes.
 *
 * Only plain files at the top level are accepted: a symlink, hard link, device, fifo, a folder
 * with anything in it, a nested path or a name listed twice refuses the whole archive (422,
 * naming the entry), and nothing is stored. A leading `./` is dropped (`tar -C folder .` writes
 * it), and the `./` entry itself is skipped.
 */
import { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { MaasError, UnprocessableError } from '../errors';
import { bundleFileNameProblem } from './bundle';
import type { BundleSource, ModelRegistry } from './model-registry';
import type { RegisterOptions, RegisterResult } from './types';

/** What an archive entry's name is in the bundle, or why it is refused. */
function entryName(header: Header): { name: string } | { skip: true } {
  const raw = header.name;
  const name = raw.replace(/^(\.\/)+/, '');
  if (header.type === 'directory') {
    if (name === '' || name === '.' || name === './') return { skip: true };
    throw refuse(
      raw,
      'is a folder: archive the bundle files at the top level (tar -cf bundle.tar -C folder .)',
    );
  }
  if (header.type !== 'file' && header.type !== 'contiguous-file')
    throw refuse(
      raw,
      `is a ${header.type}${header.linkname ? ` to ${JSON.stringify(header.linkname)}` : ''}; a bundle archive holds plain files only`,
    );
  if (name.includes('/'))
    throw refuse(
      raw,
      'is inside a folder: archive the bundle files at the top level (tar -cf bundle.tar -C folder .)',
    );
  const problem = bundleFileNameProblem(name);
  if (problem) throw refuse(raw, problem);
  return { name };
}

const refuse = (entry: string, why: string): UnprocessableError =>
  new UnprocessableError(`tar entry ${JSON.stringify(entry)} ${why}`, { entry });

/**
 * The archive's files as bundle sources, in archive order. The next entry is read only once the
 * previous source's body has been consumed (or it is skipped, drained, when the consumer moved on).
 *
 * @example
 * ```ts
 * for await (const source of tarBundleSources(stream)) console.log(source.name, source.size);
 * ```
 */
export async function* tarBundleSources(archive: Readable): AsyncGenerator<BundleSource> {
  const parser = extract();
  // A failure of the source stream (the store) stays itself, so it is retried; everything the
  // parser raises on its own is a malformed archive, the uploader's to fix.
  let sourceError: unknown;
  archive.on('error', (e) => {
    sourceError = e;
    parser.destroy(e);
  });
  // Errors reach the loop below through the iterator; once it is left (a refusal) the parser is
  // destroyed and a late "unexpected end of data" must not become an unhandled error event.
  parser.on('error', () => undefined);
  archive.pipe(parser as unknown as NodeJS.WritableStream);
  const asTarError = (e: unknown): unknown => {
    if (sourceError !== undefined) return sourceError;
    if (e instanceof MaasError) return e;
    return new UnprocessableError(`not a valid tar archive: ${(e as Error).message}`);
  };
  const seen = new Set<string>();
  let files = 0;
  try {
    for await (const entry of parser) {
      const found = entryName(entry.header);
      if ('skip' in found) {
        entry.resume();
        continue;
      }
      if (seen.has(found.name)) throw refuse(entry.header.name, 'appears twice in the archive');
      seen.add(found.name);
      files++;
      // The entry's bytes, with a truncated archive reported as such (not as a 500) to whoever reads them.
      const body = Readable.from(
        (async function* () {
          try {
            yield* entry as AsyncIterable<Uint8Array>;
          } catch (e) {
            throw asTarError(e);
          }
        })(),
      );
      yield { name: found.name, body, size: entry.header.size };
      // The consumer may have stopped early (a refusal): drain so the parser can finish.
      if (!body.readableEnded) body.resume();
    }
  } catch (e) {
    throw asTarError(e);
  } finally {
    archive.destroy();
    parser.destroy();
  }
  if (files === 0) throw new UnprocessableError('the tar archive holds no files');
}

/**
 * Registers a `.tar` archive's files as one version of `name` (see the module comment).
 *
 * @example
 * ```ts
 * const { version } = await registerTarBundle(registry, 'llm', (await store.getStream(key)).body, { source: key });
 * ```
 */
export async function registerTarBundle(
  registry: ModelRegistry,
  name: string,
  archive: Readable,
  options: RegisterOptions = {},
): Promise<RegisterResult> {
  return registry.registerBundle(name, tarBundleSources(archive), options);
}

/**
 * What the `incoming/` path registers for the object at `key`: a `.tar` archive as a bundle
 * (any case: `.TAR` too; {@link registerTarBundle}), anything else as one ONNX file (`registerVersion`).
 *
 * @example
 * ```ts
 * await registerIncoming(registry, 'incoming/llm/v2.tar', 'llm', found.body, { source });
 * ```
 */
export function registerIncoming(
  registry: ModelRegistry,
  key: string,
  name: string,
  body: Readable,
  options: RegisterOptions,
): Promise<RegisterResult> {
  return key.toLowerCase().endsWith('.tar')
    ? registerTarBundle(registry, name, body, options)
    : registry.registerVersion(name, body, options);
}
