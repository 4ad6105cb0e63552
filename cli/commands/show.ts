import type { ModelDescription } from '../../functions/catalog/describe';
import type { ModelVersion } from '../../shared/registry';
import type { CliCommand } from '../context';
import { fields, formatBytes, table, tensorSignature } from '../output';

export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('show')
      .description('show a model (aliases, counts) or one version (by number, alias or "latest")')
      .argument('<name>', 'model name')
      .argument('[version]', 'version number, alias or latest')
      .action((name: string, version: string | undefined) =>
        run(async ({ client, out }) => {
          const base = `/models/${encodeURIComponent(name)}`;
          if (version === undefined) {
            const d = (await client.request('GET', base)).json<ModelDescription>();
            out.print(d, (m) =>
              [
                fields([
                  ['name', m.name],
                  ['latest', m.latestVersion],
                  ['latest active', m.latestActiveVersion],
                  [
                    'versions',
                    `${m.counts.versions} (${m.counts.active} active, ${m.counts.rejected} rejected, ${m.counts.archived} archived)`,
                  ],
                ]),
                '',
                table(
                  ['ALIAS', 'VERSION', 'CANARY', 'REVISION', 'UPDATED', 'REASON'],
                  Object.values(m.aliases).map((a) => [
                    a.alias,
                    a.version,
                    a.canary ? `v${a.canary.version}@${a.canary.weight}` : '',
                    a.revision,
                    a.updatedAt,
                    a.reason,
                  ]),
                ),
              ].join('\n'),
            );
            return;
          }
          const v = (
            await client.request('GET', `${base}/versions/${encodeURIComponent(version)}`)
          ).json<ModelVersion>();
          out.print(v, (m) =>
            fields([
              ['model', m.name],
              ['version', m.version],
              ['status', m.statusReason ? `${m.status} (${m.statusReason})` : m.status],
              ['size', formatBytes(m.size)],
              ['sha256', m.sha256],
              ['created', `${m.createdAt} by ${m.actor}`],
              ['source', m.source],
              ['description', m.description],
              [
                'tags',
                Object.entries(m.tags)
                  .map(([k, t]) => `${k}=${t}`)
                  .join(' '),
              ],
              ['inputs', tensorSignature(m.onnx.inputs)],
              ['outputs', tensorSignature(m.onnx.outputs)],
              ['opsets', m.onnx.opsets.map((o) => `${o.domain || 'ai.onnx'}:${o.version}`).join(' ')],
              ...(m.textGeneration
                ? ([
                    [
                      'task',
                      `text-generation (KV cache: ${m.textGeneration.kvCache}, context ${m.textGeneration.contextLength} tokens${m.textGeneration.chatTemplate ? ', chat template' : ''})`,
                    ],
                  ] as [string, string][])
                : []),
            ]),
          );
        }),
      ),
};
