import type { AliasRecord } from '../../shared/registry';
import type { CliCommand } from '../context';

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('rollback')
      .description('move an alias back to the version it held before (or to --to)')
      .argument('<name>', 'model name')
      .option('-a, --alias <alias>', 'alias to roll back', 'production')
      .option('--to <version>', 'explicit target version')
      .option('-r, --reason <text>', 'recorded in history')
      .action((name: string, o: { alias: string; to?: string; reason?: string }) =>
        run(async ({ client, out }) => {
          const res = await client.request('POST', `/models/${encodeURIComponent(name)}/rollback`, {
            json: {
              alias: o.alias,
              ...(o.to ? { to: Number(o.to) } : {}),
              ...(o.reason ? { reason: o.reason } : {}),
            },
          });
          out.print(
            res.json<AliasRecord>(),
            (r) => `${r.name} ${r.alias} rolled back to v${r.version}  etag ${r.etag}`,
          );
        }),
      ),
};
