import type { Command } from 'commander';
import { MaasClient } from './client';
import { createOutput, type Output } from './output';

/** Options every command inherits from the program. */
export interface GlobalOptions {
  endpoint: string;
  apiKey?: string;
  sigv4?: boolean;
  region?: string;
  json?: boolean;
  /** Where `generate` / `chat` stream from (the Function URL on AWS); default: `endpoint`. */
  generateEndpoint?: string;
}

/** What a command's action gets: a client built from the global options, and an output. */
export interface CommandContext {
  client: MaasClient;
  /** The client of the text-generation routes (`--generate-endpoint`, else `client`'s endpoint). */
  generateClient: MaasClient;
  out: Output;
}

/**
 * One CLI command module: `cli/commands/{name}.ts` exporting `command`. The program loads every
 * module in that folder, so adding a command is adding one file.
 *
 * @example
 * ```ts
 * export const command: CliCommand = {
 *   register: (program, run) => program.command('models').description('list models').action(() => run(async ({ client, out }) => { ... })),
 * };
 * ```
 */
export interface CliCommand {
  register(program: Command, run: (action: (ctx: CommandContext) => Promise<void>) => Promise<void>): void;
}

/**
 * Builds the context from the program's parsed global options.
 *
 * @example
 * ```ts
 * const { client, out } = contextOf(program);
 * ```
 */
export function contextOf(program: Command): CommandContext {
  const o = program.opts<GlobalOptions>();
  const clientOf = (endpoint: string) =>
    new MaasClient({
      endpoint,
      ...(o.apiKey ? { apiKey: o.apiKey } : {}),
      ...(o.sigv4 !== undefined ? { sigv4: o.sigv4 } : {}),
      ...(o.region ? { region: o.region } : {}),
    });
  const client = clientOf(o.endpoint);
  return {
    client,
    generateClient: o.generateEndpoint ? clientOf(o.generateEndpoint) : client,
    out: createOutput(o.json ?? false),
  };
}
