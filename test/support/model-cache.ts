import { readdirSync } from 'node:fs';
import { sleep } from '../../shared/util/backoff';

/**
 * Waits (up to 2 s) until `count` models sit in the predict model cache folder `dir` with no
 * copy in progress. The session cache writes its local copy of a loaded model in the background
 * (close() does not await it), so a test that removes the folder right after its last request
 * would race that write (ENOTEMPTY).
 * @example
 * await localCopiesLanded(fx.cacheDir, 2); await fx.cleanup();
 */
export async function localCopiesLanded(dir: string, count: number): Promise<void> {
  const landed = (): boolean => {
    const files = readdirSync(dir);
    return files.filter((f) => f.endsWith('.onnx')).length >= count && !files.some((f) => f.endsWith('.tmp'));
  };
  for (let i = 0; i < 100 && !landed(); i++) await sleep(20);
}
