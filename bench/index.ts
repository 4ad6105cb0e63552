/**
 * `npm run bench`: runs every area's benchmark in turn, each in its own process (areas load the
 * same handler modules with their per-container singletons; a fresh process per area keeps one
 * area's caches, observers and buckets out of the next one's numbers). Each prints its own table
 * of ratios against a baseline measured in the same run: absolute times on shared CI machines are
 * noise, ratios are what we track. Pass area names to run a subset: `npm run bench -- predict`.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const AREAS = ['predict', 'memory', 'optimize', 'monitor', 'explain', 'large', 'generate', 'scale'] as const;

const wanted = process.argv.slice(2);
const areas = wanted.length > 0 ? AREAS.filter((a) => wanted.includes(a)) : AREAS;
let failed = 0;
for (const area of areas) {
  const started = Date.now();
  console.log(`\n=== bench: ${area} ===`);
  const tsx = path.join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'cli.mjs');
  const result = spawnSync(process.execPath, [tsx, path.join(__dirname, `${area}.ts`)], { stdio: 'inherit' });
  if (result.status !== 0) failed++;
  console.log(
    `=== ${area} ${result.status === 0 ? 'done' : `FAILED (exit ${result.status})`} in ${((Date.now() - started) / 1000).toFixed(1)} s ===`,
  );
}
process.exit(failed > 0 ? 1 : 0);
