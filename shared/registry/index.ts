export * from './bundle';
export { layout } from './layout';
export * from './model-registry';
export * from './names';
export * from './types';
