/**
 * Monitoring: data capture in predict, drift and health metrics, ground-truth feedback and
 * automatic rollback. See docs/api/monitor.md.
 */
export * from './histogram';
export * from './drift';
export * from './summary';
export * from './layout';
export * from './capture';
export * from './baseline';
export * from './feedback';
export * from './policy';
export {
  CLOUDWATCH_LIMITS,
  CloudWatchMetricSink,
  LocalMetricSink,
  batchMetricData,
  createMetricSink,
  toMetricData,
  type MetricPoint as MonitorMetricPoint,
  type MetricSink as MonitorMetricSink,
  type SinkResult,
} from './sink';
export * from './monitor';
export * from './optimize-sweep';
