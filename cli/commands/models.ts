import type { ModelSummary, Page } from '../../shared/registry';
import type { CliCommand } from '../context';
import { pageTable } from '../output';

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('models')
      .description('list models with their latest version and aliases')
      .option('--limit <n>', 'page size (1-100)')
      .option('--cursor <cursor>', 'continue from a previous page')
      .action((o: { limit?: string; cursor?: string }) =>
        run(async ({ client, out }) => {
          const page = (
            await client.request('GET', '/models', { query: { limit: o.limit, cursor: o.cursor } })
          ).json<Page<ModelSummary>>();
          out.print(page, (p) =>
            pageTable(p, ['NAME', 'LATEST', 'ALIASES'], (m) => [
              m.name,
              m.latestVersion,
              Object.entries(m.aliases)
                .map(([a, v]) => `${a}=v${v}`)
                .join(' '),
            ]),
          );
        }),
      ),
};
