import type { ObjectStore } from '../../shared/store';

/**
 * Wraps a store and counts the calls made through it: each call is one HTTP request on S3
 * for the small JSON documents the registry writes (model blobs here are tiny too).
 */
export function countingStore(inner: ObjectStore): {
  store: ObjectStore;
  count(): number;
  reset(): void;
  calls: string[];
} {
  const calls: string[] = [];
  const store: ObjectStore = {
    location: inner.location,
    get: (k) => {
      calls.push(`get ${k}`);
      return inner.get(k);
    },
    getStream: (k) => {
      calls.push(`getStream ${k}`);
      return inner.getStream(k);
    },
    getRange: (k, s, e) => {
      calls.push(`getRange ${k}`);
      return inner.getRange(k, s, e);
    },
    copy: (f, t, o) => {
      calls.push(`copy ${f} ${t}`);
      return inner.copy(f, t, o);
    },
    head: (k) => {
      calls.push(`head ${k}`);
      return inner.head(k);
    },
    put: (k, b, o) => {
      calls.push(`put ${k}`);
      return inner.put(k, b, o);
    },
    delete: (k) => {
      calls.push(`delete ${k}`);
      return inner.delete(k);
    },
    list: (o) => {
      calls.push(`list ${o?.prefix ?? ''}`);
      return inner.list(o);
    },
  };
  return { store, count: () => calls.length, reset: () => void calls.splice(0), calls };
}
