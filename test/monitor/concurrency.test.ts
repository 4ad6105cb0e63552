import { describe, expect, it } from 'vitest';
import { mapLimit } from '../../shared/util/concurrency';

describe('mapLimit (shared/util/concurrency.ts)', () => {
  it('keeps at most `limit` calls in flight and returns results in input order', async () => {
    let inFlight = 0;
    let peak = 0;
    const items = Array.from({ length: 25 }, (_, i) => i);
    const out = await mapLimit(items, 4, async (n, i) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      // Later items finish sooner: completion order differs from input order.
      await new Promise((r) => setTimeout(r, (25 - n) % 7));
      inFlight--;
      return `${n}@${i}`;
    });
    expect(out).toEqual(items.map((n) => `${n}@${n}`));
    expect(peak).toBe(4);
    expect(await mapLimit([], 3, async () => 1)).toEqual([]);
    expect(await mapLimit([1, 2], 10, async (n) => n * 2)).toEqual([2, 4]);
  });

  it('rejects with the first error and starts no new items after it', async () => {
    const started: number[] = [];
    const run = mapLimit([0, 1, 2, 3, 4, 5, 6, 7], 2, async (n) => {
      started.push(n);
      await new Promise((r) => setTimeout(r, 5));
      if (n === 1) throw new Error('item 1 failed');
      return n;
    });
    await expect(run).rejects.toThrow('item 1 failed');
    await new Promise((r) => setTimeout(r, 30));
    expect(started.length).toBeLessThanOrEqual(3);
    await expect(mapLimit([1], 0, async (n) => n)).rejects.toThrow(RangeError);
  });
});
