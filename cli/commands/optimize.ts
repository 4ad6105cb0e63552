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

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('optimize')
      .description('make smaller/faster variants of a version (int8, fp16, prune, graph), measured against it; passing ones are registered')
      .argument('<name>', 'model name')
      .argument('<version>', 'version number, alias or "latest"')
      .option('-t, --technique <technique...>', 'candidates: int8, fp16, prune, graph, or chains such as prune+int8', ['int8'])
      .option('-p, --parameters <json>', 'per-technique parameters as JSON, e.g. \'{"prune":{"sparsity":0.3}}\'')
      .option('-a, --alias <alias>', 'point this alias (not production) at the best registered candidate')
      .option('--no-wait', 'print the job id and return at once instead of waiting for the result')
      .option('--interval <seconds>', 'polling interval while waiting', '2')
      .action((name: string, version: string, o: { technique: string[]; parameters?: string; alias?: string; wait: boolean; interval: string }) =>
        run(async ({ client, out }) => {
          const path = `/models/${encodeURIComponent(name)}`;
          const started = await client.request('POST', `${path}/versions/${encodeURIComponent(version)}/optimize`, {
            json: {
              techniques: o.technique,
              ...(o.parameters ? { parameters: JSON.parse(o.parameters) as unknown } : {}),
              ...(o.alias ? { alias: o.alias } : {}),
            },
          });
          let job = started.json<OptimizationJob>();
          while (o.wait && !FINAL.has(job.status)) {
            await new Promise((resolve) => setTimeout(resolve, Math.max(0.2, Number(o.interval)) * 1000));
            job = (await client.request('GET', `${path}/optimizations/${encodeURIComponent(job.job)}`)).json<OptimizationJob>();
          }
          out.print(job, (j) =>
            [`job ${j.job}: ${j.status}`, ...(j.summary ?? []).map((line) => `  ${line}`), ...(j.error ? [`  error: ${j.error.message}`] : [])].join('\n'),
          );
        }),
      ),
};
