/**
 * Registry events: every history entry published to EventBridge and/or signed webhooks, at
 * least once, with the history as the outbox. See docs/api/events.md.
 */
export * from './config';
export * from './outbox';
export * from './schema';
export * from './sinks';
