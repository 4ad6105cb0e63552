/**
 * `npm run bench`: runs every area's benchmark in turn. Each module prints its own table of
 * ratios against a baseline measured in the same run (absolute times on shared CI machines
 * are noise; ratios are what we track). Pass area names to run a subset: `npm run bench -- predict`.
 */
const AREAS = ['predict', 'optimize', 'monitor'] as const;

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const areas = wanted.length > 0 ? AREAS.filter((a) => wanted.includes(a)) : AREAS;
  for (const area of areas) {
    const started = Date.now();
    console.log(`\n=== bench: ${area} ===`);
    const mod = (await import(`./${area}`)) as { run(): Promise<void> };
    await mod.run();
    console.log(`=== ${area} done in ${((Date.now() - started) / 1000).toFixed(1)} s ===`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
