/**
 * Large-model benchmark (registration and predict cold start of a bundle): a generated bundle of `BENCH_LARGE_MB`
 * MiB of float32 weights (a graph `model.onnx` plus one `model.onnx.data`, a chain of D×D MatMul +
 * Relu layers) stored in S3 (RGW, `S3_ENDPOINT`), then three fresh `node` processes, each timed
 * from spawn to its first result:
 *
 * - (f) the predict handler as deployed (esbuild bundle), empty model cache: alias → manifest →
 *   parallel ranged GETs hashed while they stream → session from the graph's path → one inference;
 * - (g) the floor: the same files fetched with the same parallel ranged GETs (part size and
 *   concurrency as predict's defaults), no hashing, no registry, then session from file + one run;
 * - (h) today's single-stream download: one GET per file, one after the other, then the same
 *   session + run.
 *
 * Registration, each in a fresh process: (r) `ModelRegistry.registerBundle` from the two files on
 * disk (hash while streaming to staging/, inspect, copy to the content address, commit) against
 * (u) a raw multipart upload of the same bytes by the AWS SDK (`@aws-sdk/lib-storage`, the same
 * part size and queue as the S3 store); ratio r/u (target ≤ 1.2) and the register process's peak
 * RSS (`process.resourceUsage().maxRSS`; target ≤ 300 MB whatever the model size).
 *
 * Ratios f/g (target ≤ 1.2) and h/g. Default size 192 MiB (about a minute here, 2 cores).
 * A ~2 GB run: `BENCH_LARGE_MB=2048 npm run bench -- large` (needs ~3 GB of RAM for onnxruntime
 * and ~4.5 GB of disk: the generated files plus the model caches of the runs).
 * `BENCH_LARGE_REPEATS` (default 1) runs each program that many times (medians);
 * `BENCH_LARGE_LOG=INFO` prints the handler's 'model loaded' line (fetch vs session time).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, DeleteBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { create } from '@bufbuild/protobuf';
import { StringStringEntryProtoSchema, TensorProto_DataLocation, TensorProtoSchema } from 'onnx-buf';
import { encodeModel } from '../shared/onnx/codec';
import { makeGraph, makeModel, makeNode, makeValueInfo } from '../shared/onnx/construct';
import { inspectModel } from '../shared/onnx/inspect';
import { bundleBlobKey, bundleDigest, layout } from '../shared/registry';
import type { BundleFile } from '../shared/registry/types';
import { createObjectStore, listAll, type ObjectStore } from '../shared/store';
import { putJson } from '../shared/store/documents';
import { printTable, writeColdPredictHandler } from './support';

const MIB = 1024 * 1024;
const SIZE_MB = Number(process.env.BENCH_LARGE_MB ?? 192);
const D = 2048; // one layer: D×D float32 = 16 MiB
const REPEATS = Number(process.env.BENCH_LARGE_REPEATS ?? 1);
const PART_BYTES = 8 * MIB;
const CONCURRENCY = 8;

interface Generated {
  dir: string;
  files: { name: string; path: string; size: number; sha256: string }[];
}

/** Writes the bundle: weights streamed to the data file (never all in memory), then the graph. */
async function generate(dir: string): Promise<Generated> {
  const layers = Math.max(1, Math.round((SIZE_MB * MIB) / (D * D * 4)));
  const dataPath = path.join(dir, 'model.onnx.data');
  const out = createWriteStream(dataPath);
  const dataHash = createHash('sha256');
  let seed = 12345;
  const scale = 1 / Math.sqrt(D);
  const initializers = [];
  const nodes = [];
  let x = 'input';
  for (let l = 0; l < layers; l++) {
    const w = new Float32Array(D * D);
    for (let i = 0; i < w.length; i++) {
      seed = (seed * 1664525 + 1013904223) >>> 0;
      w[i] = ((seed / 2 ** 32) * 2 - 1) * scale;
    }
    const bytes = Buffer.from(w.buffer);
    const offset = l * bytes.length;
    dataHash.update(bytes);
    if (!out.write(bytes)) await new Promise<void>((r) => out.once('drain', () => r()));
    initializers.push(
      create(TensorProtoSchema, {
        name: `w${l}`,
        dims: [BigInt(D), BigInt(D)],
        dataType: 1,
        dataLocation: TensorProto_DataLocation.EXTERNAL,
        externalData: [
          create(StringStringEntryProtoSchema, { key: 'location', value: 'model.onnx.data' }),
          create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
          create(StringStringEntryProtoSchema, { key: 'length', value: String(bytes.length) }),
        ],
      }),
    );
    const last = l === layers - 1;
    nodes.push(makeNode('MatMul', [x, `w${l}`], [last ? 'output' : `m${l}`], {}, { name: `mm${l}` }));
    if (!last) {
      nodes.push(makeNode('Relu', [`m${l}`], [`r${l}`], {}, { name: `relu${l}` }));
      x = `r${l}`;
    }
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  const graph = makeGraph({
    name: 'large',
    nodes,
    inputs: [makeValueInfo('input', 'FP32', [1, D])],
    outputs: [makeValueInfo('output', 'FP32', [1, D])],
    initializers,
  });
  const graphBytes = encodeModel(makeModel(graph));
  const graphPath = path.join(dir, 'model.onnx');
  await writeFile(graphPath, graphBytes);
  const dataSize = (await stat(dataPath)).size;
  return {
    dir,
    files: [
      {
        name: 'model.onnx',
        path: graphPath,
        size: graphBytes.length,
        sha256: createHash('sha256').update(graphBytes).digest('hex'),
      },
      { name: 'model.onnx.data', path: dataPath, size: dataSize, sha256: dataHash.digest('hex') },
    ],
  };
}

/** Stores the bundle as the registry does: blobs by content, then the version manifest. */
async function storeBundle(store: ObjectStore, name: string, g: Generated): Promise<BundleFile[]> {
  const files: BundleFile[] = [];
  for (const [i, f] of g.files.entries()) {
    const role = i === 0 ? 'graph' : 'data';
    const blobKey = bundleBlobKey(f.sha256, role);
    const handle = await open(f.path);
    try {
      await store.put(blobKey, handle.createReadStream(), { contentType: 'application/octet-stream' });
    } finally {
      await handle.close().catch(() => undefined);
    }
    files.push({ name: f.name, size: f.size, sha256: f.sha256, blobKey, role });
  }
  const graphBytes = await readFile(g.files[0]!.path);
  const onnx = inspectModel(graphBytes, {
    bundleFiles: new Map(files.slice(1).map((f) => [f.name, f.size])),
  });
  await putJson(store, layout.version(name, 1), {
    name,
    version: 1,
    sha256: bundleDigest(files),
    size: files.reduce((n, f) => n + f.size, 0),
    blobKey: files[0]!.blobKey,
    files,
    createdAt: new Date().toISOString(),
    actor: 'bench',
    description: '',
    tags: {},
    source: 'bench',
    metadata: {},
    onnx,
  });
  return files;
}

/** The three cold-start programs (handler bundle; ranged floor; single stream). */
async function children(dir: string): Promise<{ handler: string; ranged: string; single: string }> {
  const handler = await writeColdPredictHandler(dir);
  const ortPath = JSON.stringify(require.resolve('onnxruntime-node'));
  const s3Path = JSON.stringify(require.resolve('@aws-sdk/client-s3'));
  // argv: bucket, prefix, dest dir, then name=key=size triples.
  const common = `const ort = require(${ortPath});
const { S3Client, GetObjectCommand } = require(${s3Path});
const fs = require('fs');
const path = require('path');
const [bucket, prefix, dest, ...specs] = process.argv.slice(2);
const files = specs.map((s) => { const [name, key, size] = s.split('='); return { name, key: prefix + '/' + key, size: Number(size) }; });
const client = new S3Client({ endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.S3_REGION || 'us-east-1',
  credentials: { accessKeyId: process.env.S3_ACCESS_KEY, secretAccessKey: process.env.S3_SECRET_KEY } });
async function run() {
  const session = await ort.InferenceSession.create(path.join(dest, 'model.onnx'));
  await session.run({ input: new ort.Tensor('float32', new Float32Array(${D}).fill(0.5), [1, ${D}]) });
  process.stdout.write('COLD-OK\\n');
  process.exit(0);
}
`;
  const ranged = path.join(dir, 'cold-ranged.cjs');
  await writeFile(
    ranged,
    `${common}
(async () => {
  const parts = [];
  const handles = {};
  for (const f of files) {
    handles[f.name] = fs.openSync(path.join(dest, f.name), 'w');
    for (let start = 0; start < f.size; start += ${PART_BYTES}) parts.push({ f, start, end: Math.min(f.size, start + ${PART_BYTES}) - 1 });
  }
  let next = 0;
  await Promise.all(Array.from({ length: ${CONCURRENCY} }, async () => {
    while (next < parts.length) {
      const p = parts[next++];
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: p.f.key, Range: 'bytes=' + p.start + '-' + p.end }));
      const buf = Buffer.from(await out.Body.transformToByteArray());
      fs.writeSync(handles[p.f.name], buf, 0, buf.length, p.start);
    }
  }));
  for (const h of Object.values(handles)) fs.closeSync(h);
  await run();
})();
`,
  );
  const single = path.join(dir, 'cold-single.cjs');
  await writeFile(
    single,
    `${common}
const { pipeline } = require('stream/promises');
(async () => {
  for (const f of files) {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: f.key }));
    await pipeline(out.Body, fs.createWriteStream(path.join(dest, f.name)));
  }
  await run();
})();
`,
  );
  return { handler, ranged, single };
}

/** The two registration programs: registerBundle from disk, and the SDK's raw multipart upload. */
async function registrationChildren(dir: string): Promise<{ register: string; upload: string }> {
  const { build } = await import('esbuild');
  const bundleOf = async (name: string, contents: string): Promise<string> => {
    const outfile = path.join(dir, `${name}.cjs`);
    await build({
      stdin: { contents, resolveDir: path.join(__dirname, '..'), loader: 'ts' },
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      logLevel: 'error',
    });
    return outfile;
  };
  // argv: store url, model name, then name=path pairs. Prints elapsed ms and peak RSS (KiB).
  const report = `process.stdout.write('REG ' + (performance.now() - t0).toFixed(0) + ' ' + process.resourceUsage().maxRSS + '\\n');`;
  const register = await bundleOf(
    'bench-register',
    `import { createReadStream } from 'node:fs';
import { ModelRegistry } from './shared/registry';
import { createObjectStore } from './shared/store';
const [url, name, ...specs] = process.argv.slice(2);
const t0 = performance.now();
const registry = new ModelRegistry(createObjectStore(url), { maxModelBytes: Number.MAX_SAFE_INTEGER });
registry
  .registerBundle(name, specs.map((s) => { const [file, p] = s.split('='); return { name: file, body: createReadStream(p) }; }))
  .then(() => { ${report} process.exit(0); }, (e) => { console.error(e); process.exit(1); });
`,
  );
  const upload = await bundleOf(
    'bench-upload',
    `import { createReadStream } from 'node:fs';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
const [bucket, ...specs] = process.argv.slice(2);
const client = new S3Client({ endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.S3_REGION || 'us-east-1',
  credentials: { accessKeyId: process.env.S3_ACCESS_KEY, secretAccessKey: process.env.S3_SECRET_KEY } });
const t0 = performance.now();
(async () => {
  for (const s of specs) {
    const [file, p] = s.split('=');
    await new Upload({ client, params: { Bucket: bucket, Key: 'raw/' + file, Body: createReadStream(p) }, partSize: 8 * 1024 * 1024, queueSize: 4 }).done();
  }
  ${report}
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`,
  );
  return { register, upload };
}

/** Runs a registration program; its own elapsed time and peak RSS (MB). */
function registrationChild(script: string, args: string[]): Promise<{ ms: number; rssMb: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    proc.on('exit', (code) => {
      const m = /REG (\d+) (\d+)/.exec(out);
      if (code !== 0 || !m)
        reject(new Error(`${path.basename(script)} exited with ${code}: ${out.slice(-500)}`));
      else resolve({ ms: Number(m[1]), rssMb: Number(m[2]) / 1024 });
    });
  });
}

function child(script: string, args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const proc = spawn(process.execPath, [script, ...args], {
      env: {
        ...process.env,
        ...env,
        // BENCH_LARGE_LOG=INFO shows the handler's 'model loaded' line (fetch vs session time).
        POWERTOOLS_LOG_LEVEL: process.env.BENCH_LARGE_LOG ?? 'WARN',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    let done = false;
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (!done && out.includes('COLD-OK')) {
        done = true;
        const loaded = /"message":"model loaded".*$/m.exec(out)?.[0];
        if (loaded)
          console.log(
            `  ${path.basename(script)}: ${loaded.replace(/.*"estimatedBytes"/, '"estimatedBytes"')}`,
          );
        resolve(performance.now() - started);
      }
    });
    proc.on('exit', (code) => {
      if (!done) reject(new Error(`${path.basename(script)} exited with ${code}: ${out.slice(-500)}`));
    });
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function run(): Promise<void> {
  if (!process.env.S3_ENDPOINT || !process.env.S3_ACCESS_KEY || !process.env.S3_SECRET_KEY) {
    console.log(
      'bench large: needs an S3 endpoint (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, e.g. RGW); skipped',
    );
    return;
  }
  const work = await mkdtemp(path.join(tmpdir(), 'bench-large-'));
  const bucket = `bench-large-${randomBytes(4).toString('hex')}`;
  const client = new S3Client({
    endpoint: process.env.S3_ENDPOINT,
    forcePathStyle: true,
    region: process.env.S3_REGION ?? 'us-east-1',
    credentials: { accessKeyId: process.env.S3_ACCESS_KEY, secretAccessKey: process.env.S3_SECRET_KEY },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const prefix = 'maas';
  const store = createObjectStore(`s3://${bucket}/${prefix}`);
  try {
    const t0 = performance.now();
    const g = await generate(work);
    const files = await storeBundle(store, 'large', g);
    const total = files.reduce((n, f) => n + f.size, 0);
    console.log(
      `bundle: ${files.length} files, ${(total / MIB).toFixed(0)} MiB, generated and stored in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    const regProgs = await registrationChildren(work);
    const r: { ms: number; rssMb: number }[] = [];
    const u: { ms: number; rssMb: number }[] = [];
    const pairs = g.files.map((file) => `${file.name}=${file.path}`);
    for (let i = 0; i < REPEATS; i++) {
      u.push(await registrationChild(regProgs.upload, [bucket, ...pairs]));
      r.push(await registrationChild(regProgs.register, [`s3://${bucket}/${prefix}`, `reg${i}`, ...pairs]));
    }
    const [mr, mu] = [median(r.map((x) => x.ms)), median(u.map((x) => x.ms))];
    printTable(
      [
        `registration, ${(total / MIB).toFixed(0)} MiB bundle (median of ${REPEATS})`,
        '(r) registerBundle ms',
        '(u) SDK multipart upload ms',
        'r/u',
        'register peak RSS MB',
        'upload peak RSS MB',
      ],
      [
        [
          'from disk, fresh processes',
          mr.toFixed(0),
          mu.toFixed(0),
          (mr / mu).toFixed(2),
          Math.max(...r.map((x) => x.rssMb)).toFixed(0),
          Math.max(...u.map((x) => x.rssMb)).toFixed(0),
        ],
      ],
    );
    console.log('targets: r/u ≤ 1.2, register peak RSS ≤ 300 MB whatever the size.');
    const progs = await children(work);
    const specs = files.map((f) => `${f.name}=${f.blobKey}=${f.size}`);
    const f: number[] = [];
    const gFloor: number[] = [];
    const h: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      const fresh = async (): Promise<string> => mkdtemp(path.join(work, 'cache-'));
      const c1 = await fresh();
      f.push(
        await child(progs.handler, ['large', String(D)], {
          MAAS_STORE: `s3://${bucket}/${prefix}`,
          MAAS_MODEL_CACHE_DIR: c1,
        }),
      );
      await rm(c1, { recursive: true, force: true });
      const c2 = await fresh();
      gFloor.push(await child(progs.ranged, [bucket, prefix, c2, ...specs], {}));
      await rm(c2, { recursive: true, force: true });
      const c3 = await fresh();
      h.push(await child(progs.single, [bucket, prefix, c3, ...specs], {}));
      await rm(c3, { recursive: true, force: true });
    }
    const [mf, mg, mh] = [median(f), median(gFloor), median(h)];
    printTable(
      [
        `cold start, ${(total / MIB).toFixed(0)} MiB bundle (median of ${REPEATS})`,
        '(f) handler ms',
        '(g) floor: ranged GETs + session + run ms',
        '(h) single stream + session + run ms',
        'f/g',
        'h/g',
      ],
      [
        [
          'MatMul chain, 1 data file',
          mf.toFixed(0),
          mg.toFixed(0),
          mh.toFixed(0),
          (mf / mg).toFixed(2),
          (mh / mg).toFixed(2),
        ],
      ],
    );
    console.log(
      `target: f/g ≤ 1.2. Part size ${PART_BYTES / MIB} MiB, ${CONCURRENCY} in flight (predict's defaults). Fresh node processes, spawn to first result.`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
    // Empty and drop the bucket.
    const all = await listAll(store, {});
    for (const o of all.objects) await store.delete(o.key);
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
  }
}

if (require.main === module) {
  run().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
