/**
 * The file store's compare-and-swap lock and put etags under contention (real files, several
 * store instances on one root as several processes would have): a put returns the etag of its
 * own write, a stale lock is broken by one waiter only, and no update is lost.
 */

import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readJson, updateJson } from '../../shared/store/documents';
import { FileObjectStore } from '../../shared/store/file-store';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'maas-file-lock-'));
});
afterEach(async () => rm(root, { recursive: true, force: true }));

const lockPath = (key: string): string =>
  path.join(root, '.store', 'locks', createHash('sha1').update(key).digest('hex'));

/** A lock file left by a holder that died an hour ago. */
async function plantDeadLock(key: string): Promise<void> {
  await mkdir(path.dirname(lockPath(key)), { recursive: true });
  const handle = await open(lockPath(key), 'wx');
  await handle.writeFile('dead-holder');
  await handle.close();
  const old = new Date(Date.now() - 3_600_000);
  await utimes(lockPath(key), old, old);
}

describe('FileObjectStore.put', () => {
  it('returns the etag of its own write even when another writer replaces the key right after', async () => {
    const a = new FileObjectStore(root);
    const b = new FileObjectStore(root);
    let mixedUp = 0;
    for (let round = 0; round < 40; round++) {
      const [pa, pb] = await Promise.all([a.put('race.json', `a${round}`), b.put('race.json', `b${round}`)]);
      expect(pa.etag).not.toBe(pb.etag);
      const final = await a.get('race.json');
      const winner = final.body.toString() === `a${round}` ? pa : pb;
      const loser = winner === pa ? pb : pa;
      expect(winner.etag).toBe(final.etag);
      if (loser.etag === final.etag) mixedUp++;
    }
    expect(mixedUp).toBe(0);
  });
});

describe('FileObjectStore compare-and-swap lock', () => {
  it('a stale lock is broken by one waiter: concurrent increments from several stores lose nothing', async () => {
    const stores = Array.from({ length: 6 }, () => new FileObjectStore(root, { staleLockMs: 150 }));
    await updateJson<{ n: number }>(stores[0]!, 'counter.json', () => ({ n: 0 }));
    const perStore = 8;
    for (let trial = 0; trial < 3; trial++) {
      await plantDeadLock('counter.json');
      await Promise.all(
        stores.map(async (store) => {
          for (let i = 0; i < perStore; i++)
            await updateJson<{ n: number }>(store, 'counter.json', (c) => ({ n: (c?.doc.n ?? 0) + 1 }));
        }),
      );
    }
    expect((await readJson<{ n: number }>(stores[0]!, 'counter.json'))?.doc.n).toBe(
      3 * stores.length * perStore,
    );
    // Released, and no breaker marker left behind.
    expect(await readdir(path.dirname(lockPath('counter.json')))).toEqual([]);
  });
});
