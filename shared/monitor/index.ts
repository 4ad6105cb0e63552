/**
 * Monitoring: data capture in predict, drift and health metrics, ground-truth feedback and
 * automatic rollback. See docs/api/monitor.md.
 */

export * from './baseline';
export * from './capture';
export * from './drift';
export * from './feedback';
export * from './histogram';
export * from './layout';
export * from './metric-points';
export * from './metrics-sink';
export * from './policy';
export * from './report';
export * from './rollback-actions';
export * from './rollback-evaluation';
export * from './run';
export * from './summary';
