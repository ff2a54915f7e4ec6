import { assertEquals } from "./_assert.ts";
import { fromServiceError } from "../src/transport.ts";

// gRPC status codes (grpc.status in grpc-js, which only src/transport.ts imports).
const CANCELLED = 1;
const INTERNAL = 13;
const UNAVAILABLE = 14;

/** A call's error as grpc-js gives it: a status code, its details, and the trailers (none here). */
const failed = (code: number, details: string) =>
  Object.assign(new Error(details), { code, details, metadata: undefined as never });

Deno.test("a call whose own connection broke under it is UNAVAILABLE, not grpc-js's INTERNAL", () => {
  const broken = fromServiceError(
    failed(INTERNAL, "Received RST_STREAM with code 2 triggered by internal client error: write EPIPE"),
  );
  assertEquals(broken.code, "UNAVAILABLE");
  // An INTERNAL that the other end sent stays INTERNAL.
  assertEquals(fromServiceError(failed(INTERNAL, "the primary gave no decision")).code, "INTERNAL");
  assertEquals(fromServiceError(failed(UNAVAILABLE, "No connection established")).code, "UNAVAILABLE");
});

Deno.test("a call the server cut (CANCELLED, as a shutdown's end of grace does) is UNAVAILABLE, so it is retried", () => {
  const cut = fromServiceError(failed(CANCELLED, "Call cancelled"));
  assertEquals(cut.code, "UNAVAILABLE");
  assertEquals(cut.message, "UNAVAILABLE (grpc-js: CANCELLED): Call cancelled");
});
