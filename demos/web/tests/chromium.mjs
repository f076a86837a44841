// Headless Chromium for the page's tests (Debian's /usr/bin/chromium, or $CHROMIUM).
import { chromium } from 'playwright-core';

// parseArgs' option for the browser's path.
export const chromiumOption = {
  type: 'string',
  default: process.env.CHROMIUM || '/usr/bin/chromium',
};

export function launchChromium(executablePath, extraArgs = []) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', ...extraArgs],
  });
}
