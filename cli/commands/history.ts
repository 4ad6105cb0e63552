import type { HistoryEvent, Page } from '../../shared/registry';
import type { CliCommand } from '../context';
import { pageTable } from '../output';

function what(e: HistoryEvent): string {
  switch (e.type) {
    case 'registered':
    case 'optimized':
      return `v${e.version}`;
    case 'alias_moved':
    case 'rolled_back':
      return `${e.alias}: ${e.from === null || e.from === undefined ? 'new' : `v${e.from}`} -> v${e.version}`;
    case 'alias_deleted':
      return `${e.alias} (was v${e.from})`;
    case 'status_changed':
      return `v${e.version} -> ${e.status}`;
    default:
      return '';
  }
}

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('history')
      .description("a model's events, oldest first: registrations, alias moves, rollbacks, status changes")
      .argument('<name>', 'model name')
      .option('--limit <n>', 'page size (1-1000)')
      .option('--cursor <cursor>', 'continue from a previous page')
      .action((name: string, o: { limit?: string; cursor?: string }) =>
        run(async ({ client, out }) => {
          const page = (
            await client.request('GET', `/models/${encodeURIComponent(name)}/history`, {
              query: { limit: o.limit, cursor: o.cursor },
            })
          ).json<Page<HistoryEvent>>();
          out.print(page, (p) =>
            pageTable(p, ['TIME', 'EVENT', 'WHAT', 'ACTOR', 'REASON'], (e) => [
              e.time,
              e.type,
              what(e),
              e.actor,
              e.reason,
            ]),
          );
        }),
      ),
};
