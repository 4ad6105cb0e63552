import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { extract as tarExtract } from 'tar-stream';
import { bundleFileNameProblem } from '../../shared/registry/bundle';
import type { MaasClient } from '../client';
import type { CliCommand } from '../context';
import { formatBytes } from '../output';
import { ProgressBar } from '../progress';

/**
 * Writes `body` to `file` through a temp file, hashing on the way; the file appears only when the
 * bytes match `sha256` (and `size`).
 */
async function saveVerified(
  body: Readable,
  file: string,
  sha256: string,
  size: number,
  bar?: ProgressBar,
): Promise<void> {
  const tmp = `${file}.part`;
  const hash = createHash('sha256');
  let written = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      written += chunk.length;
      bar?.tick(chunk.length);
      done(null, chunk);
    },
  });
  try {
    await pipeline(body, tap, createWriteStream(tmp));
    const actual = hash.digest('hex');
    if (actual !== sha256 || written !== size)
      throw new Error(
        `${path.basename(file)}: downloaded bytes do not match the recorded sha256 (expected ${sha256}, got ${actual}); nothing written`,
      );
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

interface ListedFile {
  name: string;
  size: number;
  sha256: string;
  url?: string;
}

/** A name from the server becomes a path: only plain names of the bundle folder. */
function checkedName(name: string): string {
  const problem = bundleFileNameProblem(name);
  if (problem) throw new Error(`the server listed a bundle file ${JSON.stringify(name)} that ${problem}`);
  return name;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  });
  await Promise.all(workers);
}

/** A bundle from presigned links (S3): every file fetched in parallel and verified. */
async function saveFromLinks(files: ListedFile[], dir: string): Promise<void> {
  const total = files.reduce((n, f) => n + f.size, 0);
  const bar = total > 1024 * 1024 ? new ProgressBar('downloading', total) : undefined;
  await eachLimited(files, 4, async (f) => {
    // Presigned: fetched without our auth headers.
    const got = await fetch(f.url ?? '');
    if (!got.ok || !got.body)
      throw new Error(`download of ${f.name} from storage failed: HTTP ${got.status}`);
    await saveVerified(
      Readable.fromWeb(got.body as WebReadableStream),
      path.join(dir, f.name),
      f.sha256,
      f.size,
      bar,
    );
  });
  bar?.done();
}

/** A bundle as a tar (a file store without the local upload server): each entry must be a listed file, and every listed file must come. */
async function saveFromTar(tar: Buffer, files: ListedFile[], dir: string): Promise<void> {
  const expected = new Map(files.map((f) => [f.name, f]));
  const seen = new Set<string>();
  const extract = tarExtract();
  const done = (async () => {
    for await (const entry of extract) {
      const name = entry.header.name;
      const f = expected.get(name);
      if (entry.header.type !== 'file' || !f || seen.has(name)) {
        entry.resume();
        throw new Error(`the archive holds ${JSON.stringify(name)}, which is not a file of this version`);
      }
      seen.add(name);
      await saveVerified(
        Readable.from(entry as AsyncIterable<Buffer>),
        path.join(dir, name),
        f.sha256,
        f.size,
      );
    }
  })();
  extract.end(tar);
  await done;
  const absent = files.filter((f) => !seen.has(f.name)).map((f) => f.name);
  if (absent.length > 0) throw new Error(`the archive lacks ${absent.join(', ')}`);
}

/** `NAME:VERSION` or `NAME VERSION`: the version, and what the next argument means. */
function parseTarget(
  name: string,
  second?: string,
  third?: string,
): { name: string; version: string; dir?: string } {
  const at = name.indexOf(':');
  if (at > 0) {
    return {
      name: name.slice(0, at),
      version: name.slice(at + 1) || 'latest',
      ...(second ? { dir: second } : {}),
    };
  }
  return { name, version: second ?? 'latest', ...(third ? { dir: third } : {}) };
}

async function downloadBundle(
  client: MaasClient,
  name: string,
  version: number,
  res: { headers: Headers; body: Buffer; json<T>(): T },
  dir: string,
): Promise<{ files: ListedFile[]; size: number; sha256: string }> {
  const mode = res.headers.get('x-maas-bundle');
  let files: ListedFile[];
  if (mode === 'links') {
    files = res.json<{ files: ListedFile[] }>().files;
  } else {
    // The archive carries names and bytes; what they must hash to comes from the manifest.
    const manifest = await client.request('GET', `/models/${encodeURIComponent(name)}/versions/${version}`);
    files = manifest.json<{ files: ListedFile[] }>().files;
  }
  for (const f of files) checkedName(f.name);
  await mkdir(dir, { recursive: true });
  if (mode === 'links') await saveFromLinks(files, dir);
  else await saveFromTar(res.body, files, dir);
  return {
    files,
    size: files.reduce((n, f) => n + f.size, 0),
    sha256: res.headers.get('x-maas-sha256') ?? '',
  };
}

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('download')
      .description(
        'download a version (number, alias or latest), verified against its recorded sha256; a bundle becomes a folder of its files, each verified',
      )
      .argument('<name>', 'model name, or NAME:VERSION')
      .argument(
        '[version]',
        'version number, alias or latest (default latest); with NAME:VERSION, the folder',
      )
      .argument('[dir]', 'folder to write into (a bundle: default NAME-vVERSION/)')
      .option(
        '-o, --output <path>',
        'where to write (default NAME-vVERSION.onnx, or NAME-vVERSION/ for a bundle)',
      )
      .action(
        (first: string, second: string | undefined, third: string | undefined, o: { output?: string }) =>
          run(async ({ client, out }) => {
            const target = parseTarget(first, second, third);
            const { name, version } = target;
            const res = await client.request(
              'GET',
              `/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/download`,
              { manualRedirect: true },
            );
            const resolved = Number(res.headers.get('x-maas-version') ?? version);
            if (res.headers.get('x-maas-bundle')) {
              const dir = o.output ?? target.dir ?? `${name}-v${resolved}`;
              const got = await downloadBundle(client, name, resolved, res, dir);
              out.print(
                {
                  name,
                  version: resolved,
                  dir,
                  sha256: got.sha256,
                  size: got.size,
                  files: got.files.map((f) => f.name),
                },
                (d) =>
                  `wrote ${d.dir}/ (${d.files.length} files, ${formatBytes(d.size)}, every sha256 verified; bundle ${d.sha256})`,
              );
              return;
            }
            const fileName = `${name}-v${resolved}.onnx`;
            const file = o.output ?? (target.dir ? path.join(target.dir, fileName) : fileName);
            if (target.dir && !o.output) await mkdir(target.dir, { recursive: true });
            let sha256 = res.headers.get('x-maas-sha256') ?? '';
            let size = res.body.length;
            const bar = (n: number): ProgressBar | undefined =>
              n > 1024 * 1024 ? new ProgressBar('downloading', n) : undefined;
            if (res.status === 302) {
              // Large model: the API hands out a presigned S3 URL; fetch it without our auth headers.
              const link = res.json<{ url: string; sha256: string; size: number }>();
              ({ sha256, size } = link);
              const got = await fetch(link.url);
              if (!got.ok || !got.body) throw new Error(`download from storage failed: HTTP ${got.status}`);
              const progress = bar(size);
              await saveVerified(
                Readable.fromWeb(got.body as WebReadableStream),
                file,
                sha256,
                size,
                progress,
              );
              progress?.done();
            } else {
              const progress = bar(size);
              await saveVerified(Readable.from([res.body]), file, sha256, size, progress);
              progress?.done();
            }
            out.print(
              { name, version: resolved, file, sha256, size },
              (d) => `wrote ${d.file} (${formatBytes(d.size)}, sha256 ${d.sha256} verified)`,
            );
          }),
      ),
};
