/**
 * A {@link TextModelResolver} over local folders, one per model (`<root>/<name>/` holding the
 * bundle files), each served as version 1: for development servers and tests, where there is no
 * registry. Generators load on first use and stay loaded.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError } from '../errors';
import { loadTextGenerator, type TextGenerator, type TextGeneratorOptions } from './engine';
import type { TextModelResolver } from './routes';

/**
 * Resolves `name` (any alias, version 1) to the text model in `<root>/<name>/`.
 * @example
 * const resolver = folderResolver('/tmp/models'); // /tmp/models/tiny/{model.onnx, tokenizer.json, …}
 */
export function folderResolver(root: string, options: TextGeneratorOptions = {}): TextModelResolver {
  const loaded = new Map<string, Promise<TextGenerator>>();
  const names = async () => {
    const entries = await readdir(root, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  };
  return {
    async resolve(ref) {
      if (!(await names()).includes(ref.name) || (ref.version !== undefined && ref.version !== 1))
        throw new NotFoundError(
          `model ${ref.name}${ref.version ? ` version ${ref.version}` : ''} not found in ${root}`,
        );
      let engine = loaded.get(ref.name);
      if (!engine) {
        engine = loadTextGenerator(join(root, ref.name), options);
        loaded.set(ref.name, engine);
        engine.catch(() => loaded.delete(ref.name)); // a failed load is retried next time
      }
      return { engine: await engine, name: ref.name, version: 1 };
    },
    async list() {
      return Promise.all(
        (await names()).map(async (id) => ({
          id,
          created: Math.floor((await stat(join(root, id))).mtimeMs / 1000),
        })),
      );
    },
  };
}
