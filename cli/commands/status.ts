import type { ModelVersion } from '../../shared/registry';
import type { CliCommand } from '../context';

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('status')
      .description(
        'mark a version rejected or archived (neither can be promoted or served through an alias), or active again',
      )
      .argument('<name>', 'model name')
      .argument('<version>', 'version number')
      .argument('<status>', 'active | rejected | archived')
      .option('-r, --reason <text>', 'why (recorded with the status and in history)')
      .action((name: string, version: string, status: string, o: { reason?: string }) =>
        run(async ({ client, out }) => {
          const res = await client.request(
            'POST',
            `/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/status`,
            {
              json: { status, ...(o.reason ? { reason: o.reason } : {}) },
            },
          );
          out.print(
            res.json<ModelVersion>(),
            (v) => `${v.name} v${v.version} is ${v.status}${v.statusReason ? ` (${v.statusReason})` : ''}`,
          );
        }),
      ),
};
