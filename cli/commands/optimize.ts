import { InvalidArgumentError } from 'commander';
import type { CliCommand } from '../context';

/** The parts of a job record the CLI prints (see docs/api/optimize.md). */
interface OptimizationJob {
  job: string;
  model: string;
  version: number;
  status: 'queued' | 'running' | 'succeeded' | 'rejected' | 'failed';
  summary?: string[];
  error?: { message: string; code?: string };
}

const FINAL = new Set(['succeeded', 'rejected', 'failed']);

/** Commander argument parser for a positive number of seconds (a usage error, exit 2, otherwise). */
function positiveSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError('expected a positive number of seconds');
  return n;
}

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('optimize')
      .description(
        'make smaller/faster variants of a version (int8, fp16, prune, graph), measured against it; passing ones are registered',
      )
      .argument('<name>', 'model name')
      .argument('<version>', 'version number, alias or "latest"')
      .option(
        '-t, --technique <technique...>',
        'candidates: int8, fp16, prune, graph, or chains such as prune+int8',
        ['int8'],
      )
      .option(
        '-p, --parameters <json>',
        'per-technique parameters as JSON, e.g. \'{"prune":{"sparsity":0.3}}\'',
      )
      .option('-a, --alias <alias>', 'point this alias (not production) at the best registered candidate')
      .option('--no-wait', 'print the job id and return at once instead of waiting for the result')
      .option('--interval <seconds>', 'polling interval while waiting (at least 0.2)', positiveSeconds, 2)
      .option(
        '--timeout <seconds>',
        'give up waiting after this long (exit 1; the job keeps running)',
        positiveSeconds,
        900,
      )
      .action(
        (
          name: string,
          version: string,
          o: {
            technique: string[];
            parameters?: string;
            alias?: string;
            wait: boolean;
            interval: number;
            timeout: number;
          },
        ) =>
          run(async ({ client, out }) => {
            const path = `/models/${encodeURIComponent(name)}`;
            const started = await client.request(
              'POST',
              `${path}/versions/${encodeURIComponent(version)}/optimize`,
              {
                json: {
                  techniques: o.technique,
                  ...(o.parameters ? { parameters: JSON.parse(o.parameters) as unknown } : {}),
                  ...(o.alias ? { alias: o.alias } : {}),
                },
              },
            );
            let job = started.json<OptimizationJob>();
            const deadline = Date.now() + o.timeout * 1000;
            while (o.wait && !FINAL.has(job.status)) {
              const left = deadline - Date.now();
              if (left <= 0) {
                // The job carries on server-side: say which one and where it was, so it can be checked later.
                throw new Error(
                  `gave up waiting after ${o.timeout} s: job ${job.job} is still ${job.status} (check later: GET ${path}/optimizations/${job.job})`,
                );
              }
              await new Promise((resolve) =>
                setTimeout(resolve, Math.min(left, Math.max(0.2, o.interval) * 1000)),
              );
              job = (
                await client.request('GET', `${path}/optimizations/${encodeURIComponent(job.job)}`)
              ).json<OptimizationJob>();
            }
            out.print(job, (j) =>
              [
                `job ${j.job}: ${j.status}`,
                ...(j.summary ?? []).map((line) => `  ${line}`),
                ...(j.error ? [`  error: ${j.error.message}`] : []),
              ].join('\n'),
            );
          }),
      ),
};
