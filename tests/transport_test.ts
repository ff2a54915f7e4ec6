import { assertEquals } from "./_assert.ts";
import { BranchClient, fromServiceError, RpcError, serveBranch } from "../src/transport.ts";

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

Deno.test("a link refused for an earlier view tells its opener the refuser's view, so that it steps down", async () => {
  // Found by review: the view travelled in the refusal's trailer and was dropped where the link broke, so a
  // primary whose backups had all moved on relinked forever without learning why.
  const server = await serveBranch("127.0.0.1:0", {
    deliver: () => Promise.reject(new RpcError("UNAVAILABLE", "not used")),
    linked: () => new RpcError("ABORTED", "branch 2 is in view 7", 7),
  });
  const client = new BranchClient(`127.0.0.1:${server.port}`);
  try {
    const link = client.link(1, 42, 0);
    const broken = new Promise<RpcError>((resolve) => link.onBroken(resolve));
    const refused = await link.accepted(5_000).then(() => undefined, (error: RpcError) => error);
    assertEquals([refused?.code, refused?.view], ["ABORTED", 7]);
    assertEquals((await broken).view, 7);
  } finally {
    client.close();
    await server.shutdown(100);
  }
});
