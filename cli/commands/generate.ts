/**
 * `maas generate NAME "prompt"` and `maas chat NAME`: text generation through the OpenAI-compatible
 * routes (`/v1/completions`, `/v1/chat/completions`) with `stream: true`, printing text to stdout
 * as it arrives and the usage and finish reason to stderr (stdout stays the text alone).
 */
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import type { MaasClient } from '../client';
import type { CliCommand } from '../context';

interface SamplingOptions {
  maxTokens?: string;
  temperature?: string;
  topP?: string;
  seed?: string;
  stop?: string[];
}

interface Chunk {
  choices?: { text?: string; delta?: { content?: string }; finish_reason?: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number };
  error?: { message?: string } | string;
}

const number = (flag: string, v: string | undefined, integer = false): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)))
    throw new Error(`${flag} must be ${integer ? 'an integer' : 'a number'}, not ${JSON.stringify(v)}`);
  return n;
};

/** The request fields the sampling flags give (absent flags: the model's defaults). */
function sampling(o: SamplingOptions): Record<string, unknown> {
  const fields = {
    max_tokens: number('--max-tokens', o.maxTokens, true),
    temperature: number('--temperature', o.temperature),
    top_p: number('--top-p', o.topP),
    seed: number('--seed', o.seed, true),
    stop: o.stop && o.stop.length > 0 ? o.stop : undefined,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

const withSampling = (c: Command): Command =>
  c
    .option('--max-tokens <n>', 'most tokens to generate')
    .option('--temperature <t>', 'sampling temperature (0: greedy)')
    .option('--top-p <p>', 'nucleus sampling mass')
    .option('--seed <s>', 'seed for reproducible sampling')
    .option('--stop <s>', 'stop string (repeatable)', (v: string, all: string[] = []) => [...all, v]);

/**
 * Posts a streamed request and writes each piece of text as it arrives; resolves to the whole
 * text, the finish reason and the usage.
 */
async function streamText(
  client: MaasClient,
  path: string,
  request: Record<string, unknown>,
  write: (text: string) => void,
): Promise<{ text: string; finish?: string; usage?: Chunk['usage'] }> {
  const res = await client.stream(path, {
    ...request,
    stream: true,
    stream_options: { include_usage: true },
  });
  if (!res.body) throw new Error('the server sent no body');
  const decoder = new TextDecoder();
  let buffered = '';
  let text = '';
  let finish: string | undefined;
  let usage: Chunk['usage'];
  for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(bytes, { stream: true });
    let end = buffered.indexOf('\n\n');
    while (end >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf('\n\n');
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n');
      if (data === '' || data === '[DONE]') continue;
      const chunk = JSON.parse(data) as Chunk;
      if (chunk.error)
        throw new Error(typeof chunk.error === 'string' ? chunk.error : (chunk.error.message ?? data));
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices ?? []) {
        const piece = c.text ?? c.delta?.content ?? '';
        if (piece) {
          text += piece;
          write(piece);
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
  }
  return { text, ...(finish ? { finish } : {}), ...(usage ? { usage } : {}) };
}

const summary = (r: { finish?: string; usage?: Chunk['usage'] }): string =>
  `finish_reason: ${r.finish ?? 'unknown'}${r.usage ? `, prompt_tokens: ${r.usage.prompt_tokens}, completion_tokens: ${r.usage.completion_tokens}` : ''}`;

const stdout = (text: string): void => {
  process.stdout.write(text);
};

export const command: CliCommand = {
  register: (program, run) => {
    withSampling(
      program
        .command('generate')
        .description('complete a prompt with a text-generation model, streamed (/v1/completions)')
        .argument('<name>', 'model: NAME, NAME@alias or NAME:version')
        .argument('<prompt>', 'the prompt text'),
    ).action((name: string, prompt: string, o: SamplingOptions) =>
      run(async ({ generateClient }) => {
        const r = await streamText(
          generateClient,
          '/v1/completions',
          { model: name, prompt, ...sampling(o) },
          stdout,
        );
        process.stdout.write('\n');
        process.stderr.write(`${summary(r)}\n`);
      }),
    );
    withSampling(
      program
        .command('chat')
        .description(
          'chat with a text-generation model (/v1/chat/completions): one message per stdin line, answers streamed; /exit or EOF ends',
        )
        .argument('<name>', 'model: NAME, NAME@alias or NAME:version')
        .option('--system <text>', 'system message opening the conversation'),
    ).action((name: string, o: SamplingOptions & { system?: string }) =>
      run(async ({ generateClient }) => {
        const messages: { role: string; content: string }[] = o.system
          ? [{ role: 'system', content: o.system }]
          : [];
        const interactive = process.stdin.isTTY === true;
        const lines = createInterface({ input: process.stdin, terminal: false });
        const ask = () => {
          if (interactive) process.stderr.write('> ');
        };
        ask();
        try {
          for await (const line of lines) {
            const content = line.trim();
            if (content === '/exit') break;
            if (content === '') {
              ask();
              continue;
            }
            messages.push({ role: 'user', content });
            const r = await streamText(
              generateClient,
              '/v1/chat/completions',
              { model: name, messages, ...sampling(o) },
              stdout,
            );
            process.stdout.write('\n');
            // The whole conversation goes with each request: the server keeps no state.
            messages.push({ role: 'assistant', content: r.text });
            process.stderr.write(`(${summary(r)})\n`);
            ask();
          }
        } finally {
          lines.close();
        }
      }),
    );
  },
};
