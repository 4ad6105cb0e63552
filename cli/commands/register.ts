import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { InvalidArgumentError } from 'commander';
import type { ModelVersion } from '../../shared/registry';
import type { UploadTicket } from '../../shared/registry/uploads';
import { localBundle } from '../bundle-files';
import type { ApiResponse } from '../client';
import type { CliCommand } from '../context';
import { fields, formatBytes, tensorSignature } from '../output';
import { ProgressBar } from '../progress';
import { uploadFile, uploadSession } from '../upload';

/**
 * Files up to this size go inline in the request body; larger ones through an upload ticket.
 * API Gateway base64-encodes binary bodies into Lambda's 6 MB payload, so ~4.5 MB is the ceiling.
 */
export const INLINE_MAX_BYTES = 4 * 1024 * 1024;

const tag = (value: string, previous: Record<string, string> = {}): Record<string, string> => {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('expected KEY=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
};

interface Options {
  alias?: string;
  description?: string;
  reason?: string;
  tag?: Record<string, string>;
  upload?: boolean;
  inline?: boolean;
  force?: boolean;
  parallel?: number;
  partSize?: number;
}

const positive = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
};

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('register')
      .description(
        'register an ONNX file (with the external data files it references and the companion files next to it) or a folder holding one, as the next version of a model (same bytes again: the existing version)',
      )
      .argument('<name>', 'model name')
      .argument('<path>', 'ONNX model file, or a folder with one .onnx file')
      .option('-a, --alias <alias>', 'point this alias (e.g. staging) at the new version')
      .option('-d, --description <text>', 'what this version is')
      .option('-r, --reason <text>', 'recorded in history')
      .option('-t, --tag <key=value>', 'a tag (repeatable)', tag)
      .option('--upload', `always use a presigned upload (default above ${formatBytes(INLINE_MAX_BYTES)})`)
      .option('--inline', 'always send the bytes in the request body')
      .option('--force', 'register a new version even if these bytes already have one')
      .option('--parallel <n>', 'bundle upload: parts in flight at once (default 4)', positive)
      .option(
        '--part-size <MiB>',
        "bundle upload: part size in MiB (5 to 5120; default: the server's)",
        positive,
      )
      .action((name: string, target: string, o: Options) =>
        run(async ({ client, out }) => {
          const bundle = await localBundle(target);
          if (bundle.ignored.length > 0)
            out.info(
              `not sent (neither referenced by the graph nor a companion file): ${bundle.ignored.join(', ')}`,
            );
          const file = bundle.files[0]!.path;
          const size = bundle.files[0]!.size;
          const meta = {
            ...(o.description !== undefined ? { description: o.description } : {}),
            ...(o.alias !== undefined ? { alias: o.alias } : {}),
            ...(o.reason !== undefined ? { reason: o.reason } : {}),
            ...(o.tag ? { tags: o.tag } : {}),
            ...(o.force ? { force: true } : {}),
          };
          const base = `/models/${encodeURIComponent(name)}`;
          let res: ApiResponse | undefined;
          let registered: { created: boolean; version: ModelVersion } | undefined;
          if (bundle.files.length > 1) {
            const [graph, ...rest] = bundle.files;
            out.info(`sending ${graph!.name} with ${rest.map((f) => f.name).join(', ')}`);
            // A bundle: a multipart upload session (parallel parts, retries, one final commit).
            const total = bundle.files.reduce((n, f) => n + f.size, 0);
            const bar = new ProgressBar(`uploading ${bundle.files.length} files`, total);
            registered = await uploadSession(client, name, bundle.files, {
              meta,
              progress: bar,
              ...(o.parallel ? { parallel: o.parallel } : {}),
              ...(o.partSize ? { partBytes: o.partSize * 1024 * 1024 } : {}),
              onRetry: (f, part, attempt, e) =>
                out.info(`\nretrying part ${part} of ${f} (attempt ${attempt + 1}): ${e.message}`),
            });
            bar.done();
          } else if (o.upload || (!o.inline && size > INLINE_MAX_BYTES)) {
            const ticket = (await client.request('POST', `${base}/uploads`)).json<UploadTicket>();
            if (size > ticket.maxBytes)
              throw new Error(
                `${file} is ${formatBytes(size)}, above the server's limit of ${formatBytes(ticket.maxBytes)}`,
              );
            const bar = new ProgressBar(`uploading ${path.basename(file)}`, size);
            await uploadFile(client, ticket, file, size, bar);
            bar.done();
            res = await client.request('POST', `${base}/versions`, {
              json: { uploadKey: ticket.uploadKey, ...meta },
            });
          } else {
            const query = Object.fromEntries(
              Object.entries(meta).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
            );
            res = await client.request('POST', `${base}/versions`, {
              body: await readFile(file),
              headers: { 'content-type': 'application/octet-stream' },
              query,
            });
          }
          const body = registered ?? res!.json<{ created: boolean; version: ModelVersion }>();
          out.print(body, (b) =>
            [
              b.created
                ? `registered ${b.version.name} v${b.version.version}`
                : `already registered as ${b.version.name} v${b.version.version} (same bytes)`,
              fields([
                ['sha256', b.version.sha256],
                ['size', formatBytes(b.version.size)],
                ...(b.version.files
                  ? [['files', b.version.files.map((f) => f.name).join(', ')] as [string, string]]
                  : []),
                ['inputs', tensorSignature(b.version.onnx.inputs)],
                ['outputs', tensorSignature(b.version.onnx.outputs)],
                ...(o.alias ? [['alias', `${o.alias} -> v${b.version.version}`] as [string, string]] : []),
              ]),
            ].join('\n'),
          );
        }),
      ),
};
