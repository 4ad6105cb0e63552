import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { CliCommand } from '../context';
import { formatBytes } from '../output';
import { ProgressBar } from '../progress';

/**
 * Writes `body` to `file` through a temp file, hashing on the way; the file appears only when the
 * bytes match `sha256`.
 */
async function saveVerified(body: Readable, file: string, sha256: string, size: number): Promise<void> {
  const tmp = `${file}.part`;
  const hash = createHash('sha256');
  const bar = size > 1024 * 1024 ? new ProgressBar('downloading', size) : undefined;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bar?.tick(chunk.length);
      done(null, chunk);
    },
  });
  try {
    await pipeline(body, tap, createWriteStream(tmp));
    const actual = hash.digest('hex');
    if (actual !== sha256)
      throw new Error(
        `downloaded bytes do not match the recorded sha256 (expected ${sha256}, got ${actual}); nothing written`,
      );
    bar?.done();
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('download')
      .description('download a version (number, alias or latest), verified against its recorded sha256')
      .argument('<name>', 'model name')
      .argument('<version>', 'version number, alias or latest')
      .option('-o, --output <file>', 'where to write (default NAME-vVERSION.onnx)')
      .action((name: string, version: string, o: { output?: string }) =>
        run(async ({ client, out }) => {
          const res = await client.request(
            'GET',
            `/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/download`,
            { manualRedirect: true },
          );
          const resolved = res.headers.get('x-maas-version') ?? version;
          const file = o.output ?? `${name}-v${resolved}.onnx`;
          let sha256 = res.headers.get('x-maas-sha256') ?? '';
          let size = res.body.length;
          if (res.status === 302) {
            // Large model: the API hands out a presigned S3 URL; fetch it without our auth headers.
            const link = res.json<{ url: string; sha256: string; size: number }>();
            ({ sha256, size } = link);
            const got = await fetch(link.url);
            if (!got.ok || !got.body) throw new Error(`download from storage failed: HTTP ${got.status}`);
            await saveVerified(Readable.fromWeb(got.body as WebReadableStream), file, sha256, size);
          } else {
            await saveVerified(Readable.from([res.body]), file, sha256, size);
          }
          out.print(
            { name, version: Number(resolved), file, sha256, size },
            (d) => `wrote ${d.file} (${formatBytes(d.size)}, sha256 ${d.sha256} verified)`,
          );
        }),
      ),
};
