/**
 * Seeded 32-bit PRNG (mulberry32): fast, tiny, and identical on every platform, so generated
 * weights, test inputs and benchmark payloads are reproducible. Not for cryptography.
 * @example
 * const rand = mulberry32(42);
 * const x = rand(); // in [0, 1)
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Float32Array of `length` values drawn uniformly from [min, max) with a seeded PRNG.
 * @example
 * const input = randomFloat32(mulberry32(1), 4 * 16, -1, 1);
 */
export function randomFloat32(rand: () => number, length: number, min = -1, max = 1): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = min + (max - min) * rand();
  return out;
}
