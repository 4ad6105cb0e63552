import type { ModelVersion, Page } from '../../shared/registry';
import type { CliCommand } from '../context';
import { formatBytes, pageTable } from '../output';

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('versions')
      .description("list a model's versions")
      .argument('<name>', 'model name')
      .option('--limit <n>', 'page size (1-100)')
      .option('--cursor <cursor>', 'continue from a previous page')
      .action((name: string, o: { limit?: string; cursor?: string }) =>
        run(async ({ client, out }) => {
          const page = (
            await client.request('GET', `/models/${encodeURIComponent(name)}/versions`, {
              query: { limit: o.limit, cursor: o.cursor },
            })
          ).json<Page<ModelVersion>>();
          out.print(page, (p) =>
            pageTable(p, ['VERSION', 'STATUS', 'SIZE', 'SHA256', 'CREATED', 'SOURCE', 'DESCRIPTION'], (v) => [
              v.version,
              v.status,
              formatBytes(v.size),
              v.sha256.slice(0, 12),
              v.createdAt.replace(/\.\d+Z$/, 'Z'),
              v.source,
              v.description,
            ]),
          );
        }),
      ),
};
