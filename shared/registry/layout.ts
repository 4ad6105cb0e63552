/**
 * Where the registry keeps things in the object store. Everything a model owns lives under
 * `models/{name}/`; model bytes live once per content under `blobs/`.
 *
 * | key | written | content |
 * | --- | --- | --- |
 * | `blobs/sha256/{hex}.onnx` | once, unconditional (same key ⇒ same bytes) | the model (a bundle's graph) |
 * | `blobs/sha256/{hex}.bin` | once, unconditional (same key ⇒ same bytes) | a bundle's data or companion file |
 * | `staging/{random}` | during one registration, then deleted | bytes being hashed on their way in |
 * | `models/{name}/versions/{000000001}.json` | create-only: the commit point of a version | manifest |
 * | `models/{name}/head.json` | compare-and-swap, may lag | `{latestVersion}` hint |
 * | `models/{name}/sha256/{hex}.json` | create-only claim, then CAS | dedupe index |
 * | `models/{name}/aliases/{alias}.json` | compare-and-swap | alias record |
 * | `models/{name}/status/{000000001}.json` | plain put | lifecycle status |
 * | `models/{name}/history/{time}-{id}.json` | create-only | one event |
 * | `indexes/text-generation/{name}` | once, when the model's first text-generation version is committed | empty: listing the prefix lists text models |
 */
export const layout = {
  blob: (sha256: string): string => `blobs/sha256/${sha256}.onnx`,
  dataBlob: (sha256: string): string => `blobs/sha256/${sha256}.bin`,
  stagingPrefix: 'staging/',
  staging: (id: string): string => `staging/${id}`,
  modelsPrefix: 'models/',
  modelPrefix: (name: string): string => `models/${name}/`,
  head: (name: string): string => `models/${name}/head.json`,
  versionsPrefix: (name: string): string => `models/${name}/versions/`,
  version: (name: string, version: number): string => `models/${name}/versions/${pad(version)}.json`,
  shaIndex: (name: string, sha256: string): string => `models/${name}/sha256/${sha256}.json`,
  aliasesPrefix: (name: string): string => `models/${name}/aliases/`,
  alias: (name: string, alias: string): string => `models/${name}/aliases/${alias}.json`,
  statusPrefix: (name: string): string => `models/${name}/status/`,
  status: (name: string, version: number): string => `models/${name}/status/${pad(version)}.json`,
  historyPrefix: (name: string): string => `models/${name}/history/`,
  historyEvent: (name: string, time: string, id: string): string =>
    `models/${name}/history/${time}-${id}.json`,
  textModelsPrefix: 'indexes/text-generation/',
  textModel: (name: string): string => `indexes/text-generation/${name}`,
};

/** Zero-padded so that the store's lexicographic listing is numeric order. */
export function pad(version: number): string {
  return String(version).padStart(9, '0');
}

/** The version number in a `versions/` or `status/` key. */
export function versionOfKey(key: string): number {
  return Number(/([0-9]{9})\.json$/.exec(key)?.[1] ?? NaN);
}
