/**
 * Regression test for denoland/deno#36788: Deno 2.9.4 to 2.9.6 abort (exit 134) inside node:http2 when a
 * gRPC peer closes a connection gracefully. This is why Deno is pinned to 2.9.3 (tools/package.json and
 * .ci/run); run this test under a newer Deno before moving the pin. Under 2.9.6 it fails with exit 134.
 */

import { assertEquals } from "./_assert.ts";
import { denoArgs, ROOT, spawnEntry } from "./_processes.ts";

Deno.test("a gRPC server and client in separate Deno processes survive 1000 calls, close() and tryShutdown()", async () => {
  const { process: server, lines: serverLines, stderr } = spawnEntry(
    "tests/fixtures/echo_server.ts",
    [],
    "piped",
  );
  try {
    const { port } = JSON.parse((await serverLines.next()).value ?? "{}") as { port: number };
    const client = await new Deno.Command(Deno.execPath(), {
      args: denoArgs("tests/fixtures/echo_client.ts", [`127.0.0.1:${port}`, "1000"]),
      cwd: ROOT,
    }).output();
    assertEquals(client.code, 0, new TextDecoder().decode(client.stderr));
    // The client has closed its connection; now the server shuts down gracefully.
    // A server that already died (the bug) breaks this pipe: the exit status below says how it died.
    const writer = server.stdin.getWriter();
    await writer.write(new TextEncoder().encode("stop\n")).then(() => writer.close()).catch(() => {});
    const reported = (await serverLines.next()).value;
    const status = await server.status;
    assertEquals({ code: status.code, signal: status.signal }, { code: 0, signal: null }, await stderr);
    assertEquals(JSON.parse(reported ?? "{}"), { calls: 1000 });
  } finally {
    try {
      server.kill("SIGKILL");
    } catch {
      // Already exited, as it should have.
    }
    await server.status;
    for await (const _ of serverLines);
    await stderr;
  }
});
