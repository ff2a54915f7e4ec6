/**
 * A branch's disk (src/storage.ts) on a real SQLite database in a temporary directory: what is written is
 * what a reopened database recovers, a batch is written whole or not at all, and a directory holding
 * another branch's data is refused.
 *
 * @module
 */

import { assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import type { Entry } from "../src/branch_core.ts";
import { Storage } from "../src/storage.ts";

const deposit = (position: number, amount: number, commit: number, key?: string): Entry => ({
  view: 0,
  position,
  update: { kind: "deposit", amount },
  ...(key === undefined ? {} : { key }),
  commit,
});

async function withDirectory(test: (directory: string) => void | Promise<void>): Promise<void> {
  const directory = await Deno.makeTempDir({ prefix: "bank-storage-test-" });
  try {
    await test(directory);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
}

Deno.test("a reopened database recovers every entry and failure written, in position order", () =>
  withDirectory((directory) => {
    const first = Storage.open(directory, { id: 2, balance: 100 });
    first.write({
      entries: [deposit(1, 10, 0, "7/1"), deposit(2, 5, 1)],
      balances: [110, 115],
      failures: [],
    });
    const failure = {
      update: { kind: "withdraw", amount: 900 },
      interface: "withdraw",
      success: false,
      balance: 115,
      position: 2,
    } as const;
    first.write({
      entries: [deposit(3, 1, 2)],
      balances: [116],
      failures: [{ key: "7/2", decided: failure }],
    });
    first.close();
    const again = Storage.open(directory, { id: 2, balance: 100 });
    try {
      assertEquals(again.recover(), {
        entries: [
          { entry: deposit(1, 10, 0, "7/1"), balance: 110 },
          { entry: deposit(2, 5, 1), balance: 115 },
          { entry: deposit(3, 1, 2), balance: 116 },
        ],
        failures: [{ key: "7/2", decided: failure }],
      });
      assertEquals(again.entriesFrom(2, 1), [deposit(2, 5, 1)]);
      assertEquals(again.entriesFrom(3, 10), [deposit(3, 1, 2)]);
      assertEquals(again.entriesFrom(4, 10), []);
    } finally {
      again.close();
    }
  }));

Deno.test("a ballot and a cut of the log are written in the batch's transaction, before its entries", () =>
  withDirectory((directory) => {
    const first = Storage.open(directory, { id: 2, balance: 100 });
    first.write({
      entries: [deposit(1, 10, 0), deposit(2, 5, 0, "7/2")],
      balances: [110, 115],
      failures: [],
    });
    // A new primary's log replaces position 2 (it was never committed); the branch voted in view 3.
    const replacement = { ...deposit(2, 1, 1, "8/1"), view: 3 };
    first.write({
      truncate: 1,
      ballot: { view: 3, vote: 4 },
      entries: [replacement],
      balances: [111],
      failures: [],
    });
    first.close();
    const again = Storage.open(directory, { id: 2, balance: 100 });
    try {
      assertEquals(again.recover(), {
        ballot: { view: 3, vote: 4 },
        entries: [{ entry: deposit(1, 10, 0), balance: 110 }, { entry: replacement, balance: 111 }],
        failures: [],
      });
      // A new view starts with no vote.
      again.write({ ballot: { view: 5, vote: undefined }, entries: [], balances: [], failures: [] });
      assertEquals(again.recover().ballot, { view: 5, vote: undefined });
      // A new primary's first entry and a failure's change nothing: they are the log's no-ops.
      const noOp = { ...deposit(3, 0, 2), view: 5 };
      const failure = {
        ...deposit(4, 0, 2, "8/2"),
        update: { kind: "withdraw", amount: 900 },
        failed: true,
      } as const;
      again.write({ entries: [noOp, failure], balances: [111, 111], failures: [] });
      assertEquals(again.noOps(), [3, 4]);
      assertEquals(again.recover().entries.at(-1), { entry: failure, balance: 111 });
    } finally {
      again.close();
    }
  }));

Deno.test("a batch that cannot be written whole leaves nothing of itself behind", () =>
  withDirectory((directory) => {
    const storage = Storage.open(directory, { id: 1, balance: 0 });
    try {
      storage.write({ entries: [deposit(1, 10, 0)], balances: [10], failures: [] });
      // Position 1 again, after a good entry: the whole transaction is rolled back.
      assertThrows(
        () =>
          storage.write({ entries: [deposit(2, 1, 1), deposit(1, 1, 1)], balances: [11, 12], failures: [] }),
        Error,
      );
      assertEquals(storage.recover().entries.map(({ entry }) => entry.position), [1]);
      storage.write({ entries: [deposit(2, 1, 1)], balances: [11], failures: [] });
      assertEquals(storage.recover().entries.length, 2);
    } finally {
      storage.close();
    }
  }));

Deno.test("a data directory of another branch, or of this one with another starting balance, is refused", () =>
  withDirectory((directory) => {
    Storage.open(directory, { id: 3, balance: 400 }).close();
    assertMatch(
      assertThrows(() => Storage.open(directory, { id: 4, balance: 400 }), Error).message,
      /holds the data of branch 3, not 4/,
    );
    assertMatch(
      assertThrows(() => Storage.open(directory, { id: 3, balance: 500 }), Error).message,
      /holds branch 3 started with balance 400, not 500/,
    );
    Storage.open(directory, { id: 3, balance: 400 }).close();
  }));

Deno.test("the database is in WAL mode with full sync", () =>
  withDirectory((directory) => {
    const storage = Storage.open(directory, { id: 1, balance: 0 });
    try {
      assertEquals(storage.durability(), { journal: "wal", synchronous: 2 });
    } finally {
      storage.close();
    }
  }));

Deno.test("a log that does not add up from the starting balance is refused, naming the directory", () =>
  withDirectory((directory) => {
    const storage = Storage.open(directory, { id: 1, balance: 0 });
    try {
      storage.write({ entries: [deposit(1, 10, 0)], balances: [11], failures: [] });
      assertMatch(
        assertThrows(() => storage.recover(), Error).message,
        new RegExp(`^${directory}: the log does not add up at position 1$`),
      );
    } finally {
      storage.close();
    }
  }));

Deno.test("an empty data directory name, or a file that is not a database, is refused with one line", () =>
  withDirectory(async (directory) => {
    assertMatch(
      assertThrows(() => Storage.open("", { id: 1, balance: 0 }), Error).message,
      /must not be empty/,
    );
    await Deno.writeTextFile(
      `${directory}/bank.sqlite`,
      "not a database, but long enough to be read as one.",
    );
    assertMatch(
      assertThrows(() => Storage.open(directory, { id: 1, balance: 0 }), Error).message,
      new RegExp(`^cannot use ${directory}: file is not a database`),
    );
  }));

Deno.test("a data directory in use is refused: two branches never share one", () =>
  withDirectory((directory) => {
    const first = Storage.open(directory, { id: 1, balance: 0 });
    try {
      assertMatch(
        assertThrows(() => Storage.open(directory, { id: 1, balance: 0 }), Error).message,
        new RegExp(`^cannot use ${directory}: another branch process is using it$`),
      );
    } finally {
      first.close();
    }
    Storage.open(directory, { id: 1, balance: 0 }).close();
  }));
