import { readFile } from 'node:fs/promises';
import type { CliCommand } from '../context';
import { table } from '../output';

interface InferResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  outputs: { name: string; datatype: string; shape: number[]; data: unknown[] }[];
}

const preview = (data: unknown[]): string => {
  const shown = data.slice(0, 8).map((d) => (typeof d === 'number' ? Number(d.toPrecision(6)) : d));
  return `${JSON.stringify(shown).slice(1, -1)}${data.length > 8 ? `, … (${data.length})` : ''}`;
};

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('predict')
      .description('run inference: post an Open Inference Protocol request file to /v2/models/NAME/infer')
      .argument('<name>', 'model name')
      .requiredOption(
        '-i, --input <file>',
        'OIP inference request (JSON: {"inputs": [{name, datatype, shape, data}]})',
      )
      .option('--model-version <ref>', 'a version number or alias instead of the default route')
      .action((name: string, o: { input: string; modelVersion?: string }) =>
        run(async ({ client, out }) => {
          const text = await readFile(o.input, 'utf8');
          let request: unknown;
          try {
            request = JSON.parse(text);
          } catch (e) {
            throw new Error(`${o.input} is not JSON: ${(e as Error).message}`);
          }
          const base = `/v2/models/${encodeURIComponent(name)}`;
          const path = o.modelVersion
            ? `${base}/versions/${encodeURIComponent(o.modelVersion)}/infer`
            : `${base}/infer`;
          const res = (await client.request('POST', path, { json: request })).json<InferResponse>();
          out.print(res, (r) =>
            [
              `${r.model_name}${r.model_version ? ` v${r.model_version}` : ''}`,
              table(
                ['OUTPUT', 'DATATYPE', 'SHAPE', 'DATA'],
                r.outputs.map((t) => [t.name, t.datatype, `[${t.shape.join(',')}]`, preview(t.data)]),
              ),
            ].join('\n'),
          );
        }),
      ),
};
