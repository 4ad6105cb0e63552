/**
 * The many-models scenario of issue #13 against a real `npm start`: 1,000 distinct models, each
 * served (capture on), then the scheduled monitor run over all of them, then served again. Before
 * the fan-out and the bounded caches, ~600 models crashed the server ("JavaScript heap out of
 * memory") in its second monitor run, and 300 took a 112 s, ~6 GB run.
 */
import * as fs from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileObjectStore } from '../../shared/store';
import { mapLimit } from '../../shared/util/concurrency';
import { groupRss, type LoadServer, mb, SEED_REQUEST, seedModels, startServer } from './driver';

const MODELS = 1000;
const MB = 1024 * 1024;

let dir: string;
let names: string[];
let s: LoadServer;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'many-models-'));
  names = await seedModels(path.join(dir, 'store'), MODELS);
  s = await startServer({
    MAAS_STORE: `file://${path.join(dir, 'store')}`,
    MAAS_MONITOR_SCHEDULE: 'rate(1 minute)',
    MAAS_CAPTURE_FLUSH_SECONDS: '5',
    MAAS_MONITOR_GRACE_SECONDS: '0',
  });
}, 240_000);
afterAll(async () => {
  await s?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

/** Every model twice; the statuses that were not 200. */
async function serveAll(): Promise<string[]> {
  const bad: string[] = [];
  await mapLimit(names, 8, async (name) => {
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`${s.base}/v2/models/${name}/infer`, {
        method: 'POST',
        body: SEED_REQUEST,
        headers: { 'content-type': 'application/json' },
      });
      const body = await r.text();
      if (r.status !== 200) bad.push(`${name}: ${r.status} ${body.slice(0, 120)}`);
    }
  });
  return bad;
}

describe(`npm start with ${MODELS} models`, () => {
  it('serves every model, monitors all of them in its scheduled run, and keeps serving within its memory', async () => {
    const pid = s.server.child.pid!;
    const started = groupRss(pid);
    const t0 = Date.now();
    expect(await serveAll()).toEqual([]);
    const servedS = (Date.now() - t0) / 1000;
    const afterServing = groupRss(pid);

    // The next scheduled run (every minute) reports on every model that had traffic.
    const store = new FileObjectStore(path.join(dir, 'store'));
    const reported = async (): Promise<number> =>
      await store.list({ prefix: 'monitoring/reports/', delimiter: '/' }).then(async (first) => {
        let count = first.commonPrefixes.length;
        let token = first.nextToken;
        while (token) {
          const page = await store.list({
            prefix: 'monitoring/reports/',
            delimiter: '/',
            continuationToken: token,
          });
          count += page.commonPrefixes.length;
          token = page.nextToken;
        }
        return count;
      });
    const deadline = Date.now() + 180_000;
    while ((await reported()) < MODELS && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 2000));
    const monitoredS = (Date.now() - t0) / 1000 - servedS;
    expect(await reported()).toBe(MODELS);
    const afterMonitor = groupRss(pid);

    // Still up, and a second round of traffic (the round that used to crash) is served too.
    expect(await serveAll()).toEqual([]);
    const end = groupRss(pid);
    console.log(
      `${MODELS} models: served in ${servedS.toFixed(1)} s, all reported ${monitoredS.toFixed(1)} s later; RSS MB at start ${mb(started)}, after serving ${mb(afterServing)}, after the monitor run ${mb(afterMonitor)}, after a second round ${mb(end)}`,
    );
    expect(s.server.output).not.toMatch(/heap out of memory/i);
    expect(Math.max(afterServing, afterMonitor, end)).toBeLessThan(2560 * MB);
    expect(end - afterServing).toBeLessThan(512 * MB);
  }, 420_000);
});
