// Polling for a condition in tests that watch other processes (a trainer, a
// sweep, a queue worker): every 50 ms until it holds, or fail after `ms`.

export async function waitFor(cond: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
