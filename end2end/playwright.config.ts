// Runs the specs in Debian's Chromium against a freshly started `liveview` (release
// build) on loopback. The binary and the SPA come from `make build`.
import { defineConfig } from '@playwright/test';
import { liveviewCommand, DASHBOARD_PORT, CHROMIUM_ARGS } from './tests/support';

export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${DASHBOARD_PORT}`,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        browserName: 'chromium',
        launchOptions: { executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS },
      },
    },
  ],
  webServer: {
    command: liveviewCommand(DASHBOARD_PORT),
    url: `http://127.0.0.1:${DASHBOARD_PORT}/healthz`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe',
    stderr: 'pipe',
  },
});
