import * as fs from 'node:fs';
import * as path from 'node:path';

/** One runnable README example: a ```sh block marked `<!-- readme-test: id -->` right above it. */
export interface ReadmeExample {
  id: string;
  code: string;
}

const MARKED_BLOCK = /<!--\s*readme-test:\s*([A-Za-z0-9_-]+)\s*-->[ \t]*\r?\n```sh[ \t]*\r?\n([\s\S]*?)\r?\n```/g;

/**
 * The marked examples of a markdown document, in document order.
 *
 * @example
 * ```ts
 * extractReadmeExamples(fs.readFileSync('README.md', 'utf8')).map((e) => e.id); // ['predict', 'register', …]
 * ```
 */
export function extractReadmeExamples(markdown: string): ReadmeExample[] {
  return [...markdown.matchAll(MARKED_BLOCK)].map((m) => ({ id: m[1]!, code: m[2]! }));
}

/**
 * Where the examples live: README.md once the lead merged docs/README-deploy.md into it,
 * docs/README-deploy.md until then.
 */
export function readmeWithExamples(root: string): { file: string; examples: ReadmeExample[] } {
  for (const file of ['README.md', 'docs/README-deploy.md']) {
    const full = path.join(root, file);
    if (!fs.existsSync(full)) continue;
    const examples = extractReadmeExamples(fs.readFileSync(full, 'utf8'));
    if (examples.length > 0) return { file, examples };
  }
  throw new Error('no README section with <!-- readme-test: … --> examples found');
}
