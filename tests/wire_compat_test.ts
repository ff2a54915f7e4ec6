/**
 * The wire contract from the outside: a client built only from the original system's proto talks to a
 * real branch process, and a branch and customers started by hand (not by main) work together.
 */

import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import { assertEquals, assertMatch } from "./_assert.ts";
import { makeInput, ROOT, runEntry, spawnEntry, tempDir } from "./_processes.ts";

interface OriginalResponse {
  interface: string;
  success: boolean;
  money: number;
}

/** A branch started by hand with branch.ts; stopped (SIGTERM) and awaited on dispose. */
async function startBranch(args: readonly string[]) {
  const { process, lines, stderr } = spawnEntry("branch.ts", args, "null");
  const { listening } = JSON.parse((await lines.next()).value ?? "{}") as { listening: string };
  return {
    address: listening,
    async [Symbol.asyncDispose]() {
      process.kill("SIGTERM");
      const status = await process.status;
      for await (const _ of lines);
      assertEquals(status.code, 0, `branch exit: ${await stderr}`);
    },
  };
}

/** A client of the original contract, from tests/fixtures/original_bank.proto alone. */
function originalClient(address: string) {
  const definition = loader.loadSync(
    fileURLToPath(new URL("./fixtures/original_bank.proto", import.meta.url)),
    {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    },
  );
  const method = (definition["Branch"] as grpc.ServiceDefinition)["deliver"] as grpc.MethodDefinition<
    object,
    OriginalResponse
  >;
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return {
    deliver: (request: { id: number; interface: string; money: number }) =>
      new Promise<OriginalResponse>((resolve, reject) =>
        client.makeUnaryRequest(
          method.path,
          method.requestSerialize,
          method.responseDeserialize,
          request,
          { deadline: Date.now() + 5_000 },
          (error, response) => (error ? reject(error) : resolve(response as OriginalResponse)),
        )
      ),
    [Symbol.dispose]: () => client.close(),
  };
}

Deno.test("an original client's deliver gets the original answers from a branch", async () => {
  await using branch = await startBranch(["--id", "1", "--balance", "400"]);
  using client = originalClient(branch.address);
  assertEquals(await client.deliver({ id: 1, interface: "query", money: 400 }), {
    interface: "query",
    success: true,
    money: 400,
  });
  assertEquals(await client.deliver({ id: 2, interface: "deposit", money: 170 }), {
    interface: "deposit",
    success: true,
    money: 570,
  });
  assertEquals(await client.deliver({ id: 3, interface: "withdraw", money: 571 }), {
    interface: "withdraw",
    success: false,
    money: 570,
  });
});

Deno.test("a branch answers INVALID_ARGUMENT to negative money and unknown interfaces, changing nothing", async () => {
  await using branch = await startBranch(["--id", "1", "--balance", "400"]);
  using client = originalClient(branch.address);
  for (
    const request of [{ id: 1, interface: "deposit", money: -5 }, { id: 2, interface: "steal", money: 5 }]
  ) {
    const error = await client.deliver(request).then(() => undefined, (error: grpc.ServiceError) => error);
    assertEquals(error?.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(request));
  }
  assertEquals((await client.deliver({ id: 3, interface: "query", money: 0 })).money, 400);
});

Deno.test("an original client reads money 0 once the balance no longer fits an int32", async () => {
  await using branch = await startBranch(["--id", "1", "--balance", String(2 ** 31)]);
  using client = originalClient(branch.address);
  assertEquals(await client.deliver({ id: 1, interface: "query", money: 0 }), {
    interface: "query",
    success: true,
    money: 0,
  });
});

Deno.test("branches and customers started by hand, on addresses given as flags, run the example", async () => {
  await using dir = await tempDir();
  // Two free ports: bind port 0, note the port, release it. A collision in between fails the test loudly.
  const ports = [0, 1].map(() => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return (listener.addr as Deno.NetAddr).port;
  });
  const [one, two] = ports.map((port) => `127.0.0.1:${port}`) as [string, string];
  await using _branch1 = await startBranch([
    "--id",
    "1",
    "--balance",
    "100",
    "--listen",
    one,
    "--peer",
    `2=${two}`,
  ]);
  await using _branch2 = await startBranch([
    "--id",
    "2",
    "--balance",
    "100",
    "--listen",
    two,
    "--peer",
    `1=${one}`,
  ]);
  const customers = [
    {
      id: 1,
      type: "customer",
      events: [{ interface: "deposit", money: 50 }, { interface: "query", dest: 2 }],
    },
    {
      id: 2,
      type: "customer",
      events: [{ interface: "withdraw", money: 200 }, { interface: "withdraw", money: 150 }],
    },
  ];
  await Deno.writeTextFile(`${dir.path}/in.json`, makeInput(2, 100, customers));
  const run = await runEntry("customer.ts", [
    `${dir.path}/in.json`,
    "--branch",
    `1=${one}`,
    "--branch",
    `2=${two}`,
  ]);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(
    run.stdout,
    '[\n{"id": 1, "recv": [{"interface": "deposit", "result": "success"}, {"interface": "query", "balance": 150}]},\n' +
      '{"id": 2, "recv": [{"interface": "withdraw", "result": "fail"}, {"interface": "withdraw", "result": "success"}]}\n]\n',
  );
  // The same entries at once: the output keeps the input's order and shape.
  const concurrent = await runEntry("customer.ts", [
    `${dir.path}/in.json`,
    "--branch",
    `1=${one}`,
    "--branch",
    `2=${two}`,
    "--concurrent",
  ]);
  assertEquals(concurrent.code, 0, concurrent.stderr);
  const entries = JSON.parse(concurrent.stdout) as { id: number; recv: unknown[] }[];
  assertEquals(entries.map(({ id, recv }) => [id, recv.length]), [[1, 2], [2, 2]]);
});

Deno.test("customer.ts gives up on a branch that does not serve within --start-timeout-ms, on one line", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const args = [`${ROOT}/Input.json`, "--port-base", String(port - 1), "--start-timeout-ms", "300"];
  const run = await runEntry("customer.ts", args);
  assertEquals(run.code, 1);
  assertMatch(run.stderr, /^customer: branch at 127\.0\.0\.1:\d+ is not serving within 300 ms\n$/);
});
