import { InvalidArgumentError } from 'commander';
import { startDashboardServer } from '../../ui/server';
import type { CliCommand } from '../context';

/** Commander argument parser for a TCP port, 0 for any free one (a usage error, exit 2, otherwise). */
function port(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535)
    throw new InvalidArgumentError('expected a port number (0-65535)');
  return Number(value);
}

/**
 * `maas ui`: serves the web dashboard on 127.0.0.1 and forwards its API calls to `--endpoint`,
 * signed with SigV4 from the default AWS credential chain when the endpoint is not loopback (or
 * with `--sigv4`), as `kubectl proxy` does. Runs until interrupted.
 */
export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('ui')
      .description('serve the web dashboard on 127.0.0.1, forwarding API calls (SigV4-signed) to --endpoint')
      .option('-p, --port <port>', 'local port (0: any free one)', port, 8080)
      .action((o: { port: number }) =>
        run(async ({ client, out }) => {
          const ui = await startDashboardServer({ client, port: o.port });
          out.info(
            `maas ui: dashboard on ${ui.url}/ for ${client.endpoint.origin}${client.endpoint.pathname.replace(/\/$/, '')} (${client.signs ? 'requests signed with SigV4' : 'requests not signed'}); Ctrl-C stops it`,
          );
          await new Promise<void>((resolve) => {
            process.once('SIGINT', () => resolve());
            process.once('SIGTERM', () => resolve());
          });
          await ui.close();
        }),
      ),
};
