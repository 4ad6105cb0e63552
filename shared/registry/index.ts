export * from './model-registry';
export * from './names';
export * from './types';
export { layout } from './layout';
