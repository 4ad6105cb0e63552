import { startDashboardServer } from '../../ui/server';
import type { CliCommand } from '../context';

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
      .option('-p, --port <port>', 'local port (0: any free one)', '8080')
      .action((o: { port: string }) =>
        run(async ({ client, out }) => {
          if (!/^\d{1,5}$/.test(o.port) || Number(o.port) > 65535)
            throw new Error(`--port must be a port number, got ${o.port}`);
          const ui = await startDashboardServer({ client, port: Number(o.port) });
          out.info(
            `maas ui: dashboard on ${ui.url}/ for ${client.endpoint.origin}${client.endpoint.pathname.replace(/\/$/, '')} (${client.signs ? 'requests signed with SigV4' : 'requests not signed'}); Ctrl-C stops it`,
          );
          await new Promise<void>((resolve) => {
            const stop = () => resolve();
            process.once('SIGINT', stop);
            process.once('SIGTERM', stop);
          });
          await ui.close();
        }),
      ),
};
