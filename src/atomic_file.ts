/**
 * Writing a file so that it is either the whole new text or untouched: a temporary file beside it, then
 * a rename. The temporary file is made first, so an unwritable path is found before any work is done, and
 * written in full before the rename, so that several files can all be written before any is replaced.
 *
 * @module
 */

import { dirname } from "node:path";

/** A file about to be replaced. */
export class AtomicFile {
  readonly #path: string;
  readonly #temp: string;
  readonly #mode: number;

  private constructor(path: string, temp: string, mode: number) {
    this.#path = path;
    this.#temp = temp;
    this.#mode = mode;
  }

  /** Checks that `path` can be written by making its temporary file; throws an Error whose message says why not. */
  static async reserve(path: string): Promise<AtomicFile> {
    const dir = dirname(path);
    try {
      // Such a path names a directory, or nothing: the rename at the end would fail.
      if (path === "" || path.endsWith("/")) throw new Error("names no file");
      const info = await Deno.stat(path).catch((error) => {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      });
      if (info?.isDirectory) throw new Error("is a directory");
      const temp = await Deno.makeTempFile({ dir, prefix: ".bank-output-", suffix: ".tmp" });
      // A temporary file is private (0600); the result gets the mode of the file it replaces, or 0644.
      return new AtomicFile(path, temp, (info?.mode ?? 0o644) & 0o7777);
    } catch (error) {
      // A directory that exists can still refuse new files with ENOENT: /proc, say.
      const found = error instanceof Deno.errors.NotFound &&
        await Deno.stat(dir).then((info) => info.isDirectory, () => false);
      const reason = error instanceof Deno.errors.NotFound
        ? found ? `cannot make a file in "${dir}"` : `directory "${dir}" does not exist`
        : error instanceof Deno.errors.NotADirectory
        ? `"${dir}" is not a directory`
        : error instanceof Deno.errors.PermissionDenied
        ? `permission denied in "${dir}"`
        : error instanceof Error
        ? error.message
        : String(error);
      throw new Error(reason);
    }
  }

  /**
   * Writes `text` to the temporary file and flushes it to disk; the target is untouched until
   * {@linkcode AtomicFile.publish}. Throws an Error naming the target when it cannot.
   */
  async write(text: string): Promise<void> {
    try {
      await Deno.writeTextFile(this.#temp, text);
      await Deno.chmod(this.#temp, this.#mode);
      using file = await Deno.open(this.#temp, { write: true });
      await file.sync();
    } catch (error) {
      throw new Error(`cannot write "${this.#path}": ${(error as Error).message}`);
    }
  }

  /**
   * Renames the written file over the target, and flushes the directory, so that the rename too survives
   * a crash of the machine.
   */
  async publish(): Promise<void> {
    try {
      await Deno.rename(this.#temp, this.#path);
      using dir = await Deno.open(dirname(this.#path));
      await dir.sync();
    } catch (error) {
      throw new Error(`cannot put "${this.#path}" in place: ${(error as Error).message}`);
    }
  }

  /** Removes the temporary file; the target is left as it was. */
  async discard(): Promise<void> {
    await Deno.remove(this.#temp).catch(() => {});
  }
}
