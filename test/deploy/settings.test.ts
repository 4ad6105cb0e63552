/**
 * README.md's settings table lists every setting: each `MAAS_*` / `S3_*` name the code, the plugins or
 * serverless.yml reads appears in it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../start/local-server';

const SOURCES = ['shared', 'functions', 'cli', 'scripts', 'plugins', 'layers'];

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name.startsWith('.') || e.name === 'node_modules' ? [] : filesUnder(full);
    return /\.(ts|js)$/.test(e.name) && !e.name.endsWith('.test.ts') ? [full] : [];
  });
}

describe('README.md settings', () => {
  it('documents every MAAS_* and S3_* setting the code reads', () => {
    const docs = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const used = new Map<string, string>();
    const files = [
      ...SOURCES.flatMap((d) => filesUnder(path.join(ROOT, d))),
      path.join(ROOT, 'serverless.yml'),
    ];
    for (const file of files) {
      for (const m of fs.readFileSync(file, 'utf8').matchAll(/\b((?:MAAS|S3)_[A-Z0-9_]*[A-Z0-9])\b/g)) {
        if (!used.has(m[1]!)) used.set(m[1]!, path.relative(ROOT, file));
      }
    }
    expect(used.size).toBeGreaterThan(20);
    const missing = [...used]
      .filter(([name]) => !docs.includes(`\`${name}\``))
      .map(([name, file]) => `${name} (${file})`);
    expect(missing).toEqual([]);
  });
});
