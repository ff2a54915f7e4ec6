import { assertEquals } from "./_assert.ts";
import { fromServiceError } from "../src/transport.ts";

/** A call's error as grpc-js gives it: a status code, its details, and the trailers (none here). */
const failed = (code: number, details: string) =>
  Object.assign(new Error(details), { code, details, metadata: undefined as never });

Deno.test("a call whose own connection broke under it is UNAVAILABLE, not grpc-js's INTERNAL", () => {
  const broken = fromServiceError(
    failed(13, "Received RST_STREAM with code 2 triggered by internal client error: write EPIPE"),
  );
  assertEquals(broken.code, "UNAVAILABLE");
  // An INTERNAL that the other end sent stays INTERNAL.
  assertEquals(fromServiceError(failed(13, "the primary gave no decision")).code, "INTERNAL");
  assertEquals(fromServiceError(failed(14, "No connection established")).code, "UNAVAILABLE");
});
