/**
 * Bounding a wait in time.
 *
 * @module
 */

/**
 * Resolves or rejects as `work` does, unless `timeoutMs` passes first: then it rejects with the error
 * `onTimeout` makes. The timer is cleared either way, so it never keeps the process alive.
 */
export async function deadline<T>(work: Promise<T>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), timeoutMs);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
