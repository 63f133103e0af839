// Polling for the tests: wait until a condition holds, failing with what was awaited.

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls check() every intervalMs until it is true; fails naming `label` after timeoutMs. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, label: string, intervalMs = 50): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${label}`);
    await sleep(intervalMs);
  }
}
