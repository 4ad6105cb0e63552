import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Starts (or finds) the S3 endpoint and exports S3_* + MAAS_TEST_S3 to the workers.
    globalSetup: ['./test/setup/global-setup.ts'],
    include: ['test/**/*.test.ts', 'shared/**/*.test.ts', 'functions/**/*.test.ts'],
    // Child processes, not worker threads: onnxruntime-node's native addon and
    // process.env changes by tests stay isolated per file.
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2, // 2-core CI machine; RGW runs on the same cores
    testTimeout: 60_000,
    // The SDK's notice about Node 22 is noise on the Node 20 we also support.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    // Hooks create buckets and may load models; generous on a slow CI box.
    hookTimeout: 180_000,
    // globalSetup teardown stops Ceph (up to ~10 s per daemon in the worst case).
    teardownTimeout: 60_000,
  },
});
