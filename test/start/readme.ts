import * as fs from 'node:fs';
import * as path from 'node:path';

/** One runnable README example: a ```sh block marked `<!-- readme-test: id -->` right above it. */
export interface ReadmeExample {
  id: string;
  code: string;
}

const MARKED_BLOCK =
  /<!--\s*readme-test:\s*([A-Za-z0-9_-]+)\s*-->[ \t]*\r?\n```sh[ \t]*\r?\n([\s\S]*?)\r?\n```/g;

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

/** The README's runnable examples. */
export function readmeWithExamples(root: string): { file: string; examples: ReadmeExample[] } {
  const file = 'README.md';
  const examples = extractReadmeExamples(fs.readFileSync(path.join(root, file), 'utf8'));
  if (examples.length === 0) throw new Error('README.md has no <!-- readme-test: … --> examples');
  return { file, examples };
}
