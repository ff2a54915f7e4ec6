/**
 * The floor processes' last steps (bench/floor_child.ts, bench/bare_child.ts). It imports grpc-js and
 * nothing else, so that it adds nothing to what a floor measures.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";

/** A floor process's end: binds `server` to 127.0.0.1:0, reports ready on stdout, and stops it. */
export async function bindAndReport(server: grpc.Server): Promise<void> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (error, port) => error === null ? resolve(port) : reject(error),
    )
  );
  console.log(JSON.stringify({ ready: port }));
  server.forceShutdown();
}
