/**
 * The least a gRPC process on this runtime pays to start: it loads grpc-js alone, no proto, binds
 * 127.0.0.1:0, reports ready on stdout and exits. The start-up benchmark prints it beside the floor
 * (bench/floor_child.ts), since the bank's processes load no proto either (src/protobuf.ts).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";

const server = new grpc.Server();
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync(
    "127.0.0.1:0",
    grpc.ServerCredentials.createInsecure(),
    (error, port) => error === null ? resolve(port) : reject(error),
  )
);
console.log(JSON.stringify({ ready: port }));
server.forceShutdown();
