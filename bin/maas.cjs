#!/usr/bin/env node
// Launcher for the TypeScript CLI: registers tsx's CommonJS loader so `maas` runs straight from
// the sources after `npm ci`, with no build step.
'use strict';
// `npm run maas -- …` runs from the package root; resolve the user's file arguments where they are.
if (process.env.npm_lifecycle_event === 'maas' && process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);
require('tsx/cjs/api').register();
require('../cli/maas.ts')
  .main(process.argv)
  .then((code) => {
    process.exitCode = code;
  });
