/**
 * Reading a byte stream as lines of text, for the line-based JSON that parent and child processes
 * exchange on their standard streams.
 *
 * @module
 */

/** Yields each line of `stream` without its line break; a last line without one is yielded too. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    let newline = buffered.indexOf("\n");
    while (newline !== -1) {
      yield buffered.slice(0, newline).replace(/\r$/, "");
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf("\n");
    }
  }
  if (buffered !== "") yield buffered;
}
