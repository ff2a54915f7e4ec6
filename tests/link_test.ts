/**
 * Branch.link from the outside: real branch processes, and a link opened by hand with grpc-js from
 * proto/bank.proto alone, playing the primary. A branch refuses a link that is not its primary's link to
 * it with INVALID_ARGUMENT naming why, and a backup refuses, on a link it accepted, a message meant for the
 * primary or an entry out of order.
 */

import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";
import { BranchClient } from "../src/transport.ts";
import { assertEquals, assertMatch } from "./_assert.ts";
import { ROOT, startBranch, type StartedBranch, tempDir } from "./_processes.ts";

/** The deadline of every link opened here: it bounds every wait on the link. */
const LINK_DEADLINE_MS = 10_000;

/** An address nothing listens on: a backup never dials its primary, and a primary's link to it never comes up. */
const UNUSED = "127.0.0.1:1";

/** A LinkMessage as grpc-js decodes it with the options below (int64 fields as decimal strings). */
type LinkMessage = Readonly<Record<string, unknown>>;

/**
 * Branch.link as proto/bank.proto defines it, loaded by proto-loader (not by the bank's own codec,
 * src/protobuf.ts), with int64 fields as decimal strings so that every value is seen exactly.
 */
const LINK = (() => {
  const definition = loader.loadSync(`${ROOT}/proto/bank.proto`, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return (definition["Branch"] as grpc.ServiceDefinition)["link"] as grpc.MethodDefinition<
    object,
    LinkMessage
  >;
})();

/** The answer to request `seq` on a link, carried out: the balance and log position after it. */
function applied(seq: string, balance: string, position: string): LinkMessage {
  return {
    seq,
    kind: "answer",
    answer: { success: true, balance, position, end: "0", code: 0, message: "", view: "0", commit_view: "0" },
  };
}

/** One end of a Branch.link stream opened by hand, as a primary (or an impostor) would open it. */
class RawLink implements AsyncDisposable {
  /** Settles with the status the call ended with. */
  readonly status: Promise<grpc.StatusObject>;
  readonly #client: grpc.Client;
  readonly #call: grpc.ClientDuplexStream<object, LinkMessage>;
  readonly #messages: AsyncIterator<LinkMessage>;
  readonly #accepted: Promise<string | undefined>;
  #wasAccepted = false;
  #closed: Promise<void> | undefined;

  /**
   * Opens a link to the branch at `address`, sending `branchId` as the bank-branch-id header, if given,
   * and `logId` as the bank-log-id header.
   */
  constructor(address: string, branchId: string | undefined, logId = "7") {
    this.#client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      "grpc.enable_http_proxy": 0,
    });
    const metadata = new grpc.Metadata();
    if (branchId !== undefined) metadata.set("bank-branch-id", branchId);
    metadata.set("bank-log-id", logId);
    this.#call = this.#client.makeBidiStreamRequest(
      LINK.path,
      LINK.requestSerialize,
      LINK.responseDeserialize,
      metadata,
      { deadline: Date.now() + LINK_DEADLINE_MS },
    );
    // An error status is read from `status`; an 'error' event with no listener would be thrown.
    this.#call.on("error", () => {});
    this.status = new Promise((resolve) => this.#call.on("status", resolve));
    this.#accepted = new Promise((resolve, reject) => {
      this.#call.on("metadata", (headers: grpc.Metadata) => {
        this.#wasAccepted = true;
        resolve(headers.get("bank-log-position")[0]?.toString());
      });
      this.status.then((status) =>
        reject(new Error(`link ended before it was accepted: ${describe(status)}`))
      );
    });
    this.#accepted.catch(() => {}); // Seen by accepted(), if the test asks.
    this.#messages = this.#call[Symbol.asyncIterator]();
  }

  /**
   * Resolves once the branch sends its response headers (accepts the link), with the log position they
   * name; rejects if the call ends first.
   */
  accepted(): Promise<string | undefined> {
    return this.#accepted;
  }

  /** Whether the branch has sent its response headers. */
  get wasAccepted(): boolean {
    return this.#wasAccepted;
  }

  /** Sends one message. */
  send(message: object): void {
    this.#call.write(message);
  }

  /**
   * The next message the branch sends, without its Lamport clock; rejects if the call ends first. The
   * clock is checked here, not compared: every answer or forward carries one, above 0 unless it is a
   * refusal (an error carries none). Its values are tests/clock_run_test.ts's business.
   */
  async next(): Promise<LinkMessage> {
    const next = await this.#messages.next();
    if (next.done) throw new Error(`link ended: ${describe(await this.status)}`);
    const message = next.value as LinkMessage & Record<string, Record<string, unknown>>;
    for (const kind of ["answer", "forward"]) {
      const body = message[kind];
      if (body === undefined) continue;
      const { clock, ...rest } = body;
      const refused = kind === "answer" && body["code"] !== 0;
      assertMatch(String(clock), refused ? /^0$/ : /^[1-9]\d*$/, `the clock of ${JSON.stringify(message)}`);
      message[kind] = rest;
    }
    return message;
  }

  /** Cancels the call if it is still open, waits for its status and closes the client; once. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#call.cancel();
      await this.status;
      this.#client.close();
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A status as "CODE_NAME: details", for error messages. */
function describe(status: grpc.StatusObject): string {
  return `${grpc.status[status.code]}: ${status.details}`;
}

/** The status `link` ended with, and whether the branch had accepted it (sent response headers) before. */
async function refusal(
  link: RawLink,
): Promise<{ code: string | undefined; details: string; accepted: boolean }> {
  const status = await link.status;
  return { code: grpc.status[status.code], details: status.details, accepted: link.wasAccepted };
}

/**
 * Waits until the backup at `address` serves customers, then queries it. The backup asks for a read index
 * on `primary` (the link this test plays the primary on), which is answered with `commit`; returns the
 * balance the backup answers at that position.
 */
async function queryAt(address: string, primary: RawLink, commit: number): Promise<number> {
  const client = new BranchClient(address);
  try {
    await client.waitUntilServing(LINK_DEADLINE_MS);
    const query = { id: 0, interface: "query", money: 0, amount: 0, customer_id: 0, request_id: 0 };
    const reply = client.deliver(query, LINK_DEADLINE_MS);
    const asked = await primary.next();
    assertEquals(asked["kind"], "read");
    primary.send({
      seq: asked["seq"],
      answer: { success: true, balance: 0, position: commit, code: 0, message: "" },
    });
    const { balance, position } = await reply;
    assertEquals(position, commit);
    return balance;
  } finally {
    client.close();
  }
}

/** Stops `branch` and asserts that it stopped gracefully: exit 0, nothing on stderr but what it wrote. */
async function assertStopsGracefully(branch: StartedBranch): Promise<void> {
  const { code, signal, stderr } = await branch.stop();
  const rest = stderr.replace(/^branch \d+: wrote \d+ entries in \d+ transactions?\n$/, "");
  assertEquals({ code, signal, stderr: rest }, { code: 0, signal: null, stderr: "" });
}

Deno.test("the primary refuses every link: it opens them itself", async () => {
  await using primary = await startBranch(["--id", "1", "--balance", "100", "--peer", `2=${UNUSED}`]);
  for (const opener of ["2", "3", "1"]) {
    await using link = new RawLink(primary.address, opener);
    assertEquals(await refusal(link), {
      code: "INVALID_ARGUMENT",
      details: "branch 1 is the primary: it opens the links",
      accepted: false,
    }, `link from branch ${opener}`);
  }
  await assertStopsGracefully(primary);
});

Deno.test("a backup refuses a link from any branch but its primary, and takes the primary's", async () => {
  await using backup = await startBranch(["--id", "2", "--balance", "100", "--peer", `1=${UNUSED}`]);
  for (const opener of ["3", "0", "2"]) {
    await using link = new RawLink(backup.address, opener);
    assertEquals(await refusal(link), {
      code: "INVALID_ARGUMENT",
      details: `branch ${opener} is not the primary of branch 2 (branch 1 is)`,
      accepted: false,
    }, `link from branch ${opener}`);
  }
  await using primary = new RawLink(backup.address, "1");
  await primary.accepted();
  assertEquals(await queryAt(backup.address, primary, 0), 100);
  await primary.close();
  await assertStopsGracefully(backup);
});

Deno.test("a backup takes a new link from its primary in place of the old, naming where its log ends", async () => {
  await using backup = await startBranch(["--id", "2", "--balance", "100", "--peer", `1=${UNUSED}`]);
  await using first = new RawLink(backup.address, "1");
  assertEquals(await first.accepted(), "0");
  first.send({ seq: 1, entry: { view: 0, position: 1, interface: "deposit", amount: 10 } });
  assertEquals(await first.next(), applied("1", "110", "1"));
  // A primary that restarted, or lost its link, opens a new one: it replaces the old, and learns from its
  // headers which entries the backup needs.
  await using second = new RawLink(backup.address, "1");
  assertEquals(await second.accepted(), "1");
  assertEquals((await refusal(first)).code, "CANCELLED");
  second.send({ seq: 1, entry: { view: 0, position: 2, interface: "deposit", amount: 5 } });
  assertEquals(((await second.next()).answer as { position: string }).position, "2");
  assertEquals(await queryAt(backup.address, second, 2), 115);
  await second.close();
  await assertStopsGracefully(backup);
});

Deno.test("a backup takes the log of its primary's first link, and refuses a link of any other log", async () => {
  await using dir = await tempDir();
  const args = ["--id", "2", "--balance", "100", "--peer", `1=${UNUSED}`, "--data-dir", `${dir.path}/2`];
  const backup = await startBranch(args);
  await using first = new RawLink(backup.address, "1", "7");
  await first.accepted();
  first.send({ seq: 1, entry: { view: 0, position: 1, interface: "deposit", amount: 10 } });
  assertEquals(((await first.next()).answer as { code: number }).code, 0);
  await first.close();
  await assertStopsGracefully(backup);
  // Started again on the same directory, it holds position 1 of log 7, and nothing else.
  await using again = await startBranch(args);
  await using other = new RawLink(again.address, "1", "8");
  assertEquals(await refusal(other), {
    code: "FAILED_PRECONDITION",
    details:
      "branch 2 holds a copy of log 7, not of log 8 that branch 1 keeps: its data directory is another bank's",
    accepted: false,
  });
  await using same = new RawLink(again.address, "1", "7");
  assertEquals(await same.accepted(), "1");
  await same.close();
  await assertStopsGracefully(again);
});

Deno.test("a branch refuses a link without a bank-branch-id header, or with one that is not an id", async () => {
  await using backup = await startBranch(["--id", "2", "--balance", "100", "--peer", `1=${UNUSED}`]);
  for (const header of [undefined, "", "one", "-1", "1.0", " 1", "1x", "0x1", "1234567890123456"]) {
    await using link = new RawLink(backup.address, header);
    assertEquals(await refusal(link), {
      code: "INVALID_ARGUMENT",
      details: "a link must name its opener in a bank-branch-id header",
      accepted: false,
    }, `header ${JSON.stringify(header)}`);
  }
  await using primary = new RawLink(backup.address, "1");
  await primary.accepted();
  assertEquals(await queryAt(backup.address, primary, 0), 100);
  await primary.close();
  await assertStopsGracefully(backup);
});

Deno.test("a backup takes a bundle as if each of its messages came alone, in order", async () => {
  await using backup = await startBranch(["--id", "2", "--balance", "100", "--peer", `1=${UNUSED}`]);
  await using link = new RawLink(backup.address, "1");
  await link.accepted();
  const entry = (seq: number, position: number, amount: number) => ({
    seq,
    entry: { view: 0, position, interface: "deposit", amount },
  });
  link.send({ seq: 0, bundle: { messages: [entry(1, 1, 10), entry(2, 2, 5), entry(3, 4, 1)] } });
  // The answers, written in one turn, may come back as one bundle too.
  const answers: { seq: string; answer: { position: string; code: number } }[] = [];
  while (answers.length < 3) {
    const message = await link.next() as { bundle?: { messages: typeof answers } } & (typeof answers)[number];
    answers.push(...(message.bundle?.messages ?? [message]));
  }
  assertEquals(answers.map(({ seq, answer }) => [seq, answer.position, answer.code]), [
    ["1", "1", 0],
    ["2", "2", 0],
    ["3", "0", grpc.status.ABORTED],
  ]);
  assertEquals(await queryAt(backup.address, link, 2), 115);
  await link.close();
  await assertStopsGracefully(backup);
});

Deno.test("a backup applies entries only in order, refuses a forward, and forwards its customers' updates", async () => {
  await using backup = await startBranch(["--id", "2", "--balance", "100", "--peer", `1=${UNUSED}`]);
  // This end plays the primary.
  await using link = new RawLink(backup.address, "1");
  await link.accepted();
  link.send({ seq: 1, forward: { interface: "deposit", amount: 10 } });
  assertEquals(await link.next(), {
    seq: "1",
    kind: "answer",
    answer: {
      success: false,
      balance: "0",
      position: "0",
      end: "0",
      code: grpc.status.INVALID_ARGUMENT,
      message: "branch 2 is not the primary",
      view: "0",
      commit_view: "0",
    },
  });
  link.send({ seq: 2, entry: { view: 0, position: 2, interface: "deposit", amount: 10 } });
  assertEquals(await link.next(), {
    seq: "2",
    kind: "answer",
    answer: {
      success: false,
      balance: "0",
      position: "0",
      end: "0",
      code: grpc.status.ABORTED,
      message: "entry at position 2, but branch 2 expects position 1",
      view: "0",
      commit_view: "0",
    },
  });
  // int64 amounts from 2^53 up, and negative ones, are refused exactly (the branch decodes int64 as
  // numbers; this end sends them as exact decimal strings).
  for (const amount of ["9007199254740992", "9223372036854775807", "-1"]) {
    link.send({ seq: 9, entry: { view: 0, position: 1, interface: "deposit", amount } });
    const { answer } = await link.next() as { answer: { code: number; message: string } };
    assertEquals(answer.code, grpc.status.INVALID_ARGUMENT, amount);
    assertMatch(answer.message, /^amount must be from 0 to 2\^53 - 1, got /);
  }
  link.send({ seq: 3, entry: { view: 0, position: 1, interface: "deposit", amount: 50 } });
  assertEquals(await link.next(), applied("3", "150", "1"));
  // A customer's withdrawal at the backup comes here as a forward; the backup answers its customer with
  // this end's decision, after applying the entry that carries it.
  const client = new BranchClient(backup.address);
  try {
    const reply = client.deliver(
      { id: 0, interface: "withdraw", money: 30, amount: 30, customer_id: 7, request_id: 3 },
      LINK_DEADLINE_MS,
    );
    assertEquals(await link.next(), {
      seq: "1",
      kind: "forward",
      forward: { interface: "withdraw", amount: "30", key: "7/3" },
    });
    link.send({ seq: 4, entry: { view: 0, position: 2, interface: "withdraw", amount: 30 } });
    assertEquals(await link.next(), applied("4", "120", "2"));
    // The answer carries this end's clock, far ahead of the backup's: the backup takes it on receipt (101)
    // and sends its reply at the next tick.
    const answer = { success: true, balance: 120, position: 2, code: 0, message: "", clock: 100 };
    link.send({ seq: 1, answer });
    assertEquals(await reply, {
      interface: "withdraw",
      success: true,
      money: 120,
      balance: 120,
      position: 2,
      clock: 102,
    });
  } finally {
    client.close();
  }
  // The refused entry and forward changed nothing.
  assertEquals(await queryAt(backup.address, link, 2), 120);
  await link.close();
  await assertStopsGracefully(backup);
});

Deno.test("a branch started by hand stops gracefully on SIGTERM while it still waits for its links", async () => {
  // Nothing listens where the primary's backup should, and nobody links to the backup: both are still
  // inside configure() when the signal comes.
  await using primary = await startBranch(["--id", "1", "--balance", "100", "--peer", `2=${UNUSED}`]);
  await using backup = await startBranch(["--id", "2", "--balance", "100", "--peer", `1=${UNUSED}`]);
  await assertStopsGracefully(primary);
  await assertStopsGracefully(backup);
});

Deno.test("a backup applies a batch of entries in order and answers for the last, or with the first refusal", async () => {
  await using backup = await startBranch(["--id", "2", "--balance", "100", "--peer", `1=${UNUSED}`]);
  await using link = new RawLink(backup.address, "1");
  await link.accepted();
  const entry = (position: number, amount: number) => ({
    view: 0,
    position,
    interface: "deposit",
    amount,
    commit: 0,
  });
  link.send({ seq: 1, batch: { entries: [entry(1, 1), entry(2, 2), entry(3, 3)] } });
  assertEquals(await link.next(), applied("1", "106", "3"));
  // Position 6 skips 5: the batch is refused there, and the entry before it stays applied.
  link.send({ seq: 2, batch: { entries: [entry(4, 10), entry(6, 20)] } });
  const { answer } = await link.next() as { answer: { code: number; message: string } };
  assertEquals([answer.code, answer.message], [
    grpc.status.ABORTED,
    "entry at position 6, but branch 2 expects position 5",
  ]);
  assertEquals(await queryAt(backup.address, link, 4), 116);
  await link.close();
  await assertStopsGracefully(backup);
});
