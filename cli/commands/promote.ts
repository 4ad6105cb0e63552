import type { AliasRecord } from '../../shared/registry';
import type { CliCommand } from '../context';

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('promote')
      .description('point an alias at a version (optimistic concurrency with --if-match)')
      .argument('<name>', 'model name')
      .argument('<alias>', 'alias, e.g. production')
      .argument('<version>', 'version number')
      .option('-r, --reason <text>', 'recorded in history')
      .option('--if-match <etag>', 'fail (412) unless the alias still has this etag')
      .option('--canary <version>', 'also route a share of traffic to this version')
      .option('--weight <share>', 'canary share, between 0 and 1', '0.1')
      .action(
        (
          name: string,
          alias: string,
          version: string,
          o: { reason?: string; ifMatch?: string; canary?: string; weight: string },
        ) =>
          run(async ({ client, out }) => {
            const res = await client.request(
              'PUT',
              `/models/${encodeURIComponent(name)}/aliases/${encodeURIComponent(alias)}`,
              {
                json: {
                  version: Number(version),
                  ...(o.reason ? { reason: o.reason } : {}),
                  ...(o.canary ? { canary: { version: Number(o.canary), weight: Number(o.weight) } } : {}),
                },
                headers: o.ifMatch ? { 'if-match': `"${o.ifMatch.replace(/^"|"$/g, '')}"` } : {},
              },
            );
            const a = res.json<AliasRecord>();
            const from = a.previous.at(-1);
            out.print(
              a,
              (r) =>
                `${r.name} ${r.alias} -> v${r.version}${r.canary ? ` (canary v${r.canary.version} at ${r.canary.weight})` : ''}${from !== undefined && from !== r.version ? ` (was v${from})` : ''}  etag ${r.etag}`,
            );
          }),
      ),
};
