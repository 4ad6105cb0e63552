/**
 * `maas`: manage and call models from the command line, through the same HTTP API as everyone.
 *
 * Commands live one per file in `cli/commands/` (each exports `command`, see {@link CliCommand});
 * this file only sets up the global options, loads them and maps failures to exit codes.
 */

import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { ApiError } from './client';
import { type CliCommand, type CommandContext, contextOf } from './context';

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:3000';

/** Loads every command module in `cli/commands/`, in name order. */
function loadCommands(): CliCommand[] {
  const dir = path.join(__dirname, 'commands');
  return readdirSync(dir)
    .filter((f) => /\.(ts|js|cjs)$/.test(f) && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => (require(path.join(dir, f)) as { command?: CliCommand }).command)
    .filter((c): c is CliCommand => c !== undefined);
}

/**
 * The program, ready to parse.
 *
 * @example
 * ```ts
 * await buildProgram().parseAsync(['node', 'maas', 'models', '--json']);
 * ```
 */
export function buildProgram(): Command {
  const program = new Command('maas')
    .description('Model as a Service: register, promote, roll back, download and call ONNX models')
    .addOption(
      new Option('-e, --endpoint <url>', 'maas API endpoint').env('MAAS_ENDPOINT').default(DEFAULT_ENDPOINT),
    )
    .addOption(
      new Option('-k, --api-key <key>', 'API key for stages protected by MAAS_API_KEY').env('MAAS_API_KEY'),
    )
    .addOption(
      new Option('--sigv4', 'sign requests with AWS SigV4 (default: when the endpoint is not loopback)'),
    )
    .addOption(new Option('--no-sigv4', 'never sign requests'))
    .addOption(
      new Option('--region <region>', 'SigV4 region (default: from the endpoint host, else AWS_REGION)'),
    )
    .addOption(
      new Option(
        '--generate-endpoint <url>',
        'endpoint of the text-generation routes (generate, chat), e.g. the Function URL (default: --endpoint)',
      ).env('MAAS_GENERATE_ENDPOINT'),
    )
    .option('--json', 'print JSON instead of tables')
    .showHelpAfterError()
    .exitOverride();
  // Commander's default for a --no-* pair is `true`; leave it undefined so "auto" stays possible.
  program.setOptionValueWithSource('sigv4', undefined, 'default');
  const run = async (action: (ctx: CommandContext) => Promise<void>): Promise<void> =>
    action(contextOf(program));
  for (const command of loadCommands()) command.register(program, run);
  return program;
}

/**
 * Runs the CLI; resolves to the process exit code (0 ok, 1 API or I/O failure, 2 usage).
 *
 * @example
 * ```ts
 * process.exitCode = await main(process.argv);
 * ```
 */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof ApiError) {
      const code = e.body.code ? ` ${e.body.code}` : '';
      process.stderr.write(`error: ${e.message} (HTTP ${e.status}${code})\n`);
      if (e.body.details) process.stderr.write(`details: ${JSON.stringify(e.body.details)}\n`);
      return 1;
    }
    process.stderr.write(`error: ${(e as Error)?.message ?? String(e)}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main().then((code) => {
    process.exitCode = code;
  });
}
