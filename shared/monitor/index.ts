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
export * from './monitor';
export * from './optimize-sweep';
export * from './policy';
export {
  batchMetricData,
  CLOUDWATCH_LIMITS,
  CloudWatchMetricSink,
  createMetricSink,
  LocalMetricSink,
  type MetricPoint as MonitorMetricPoint,
  type MetricSink as MonitorMetricSink,
  type SinkResult,
  toMetricData,
} from './sink';
export * from './summary';
