/** esbuild bundles imported CSS into app.css beside app.js. */
declare module '*.css';
