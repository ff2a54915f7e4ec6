/**
 * A branch's disk: its log and its record of failed decisions, in an embedded SQLite database
 * (`node:sqlite`, built into Deno), in WAL mode with full sync, so that a committed transaction survives
 * the process being killed and the machine losing power.
 *
 * Writes are grouped: the driver hands over everything it decided or received in one turn of the event
 * loop as one transaction, one fsync (group commit). Reads happen at start-up (recovery) and when a
 * backup that was away must be caught up.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { applied, type Ballot, type Decided, type Entry, type Recovered } from "./branch_core.ts";

/** The database file in a branch's data directory. */
const DATABASE_FILE = "bank.sqlite";

/** Whose database it is: the branch, and the balance it started with. */
export interface StorageOwner {
  readonly id: number;
  readonly balance: number;
}

/** What a branch writes in one transaction, in this order. */
export interface Batch {
  /** Drop the log after this position first (see the core's `persist` output). */
  readonly truncate?: number | undefined;
  /** The branch's view and vote, if they changed. */
  readonly ballot?: Ballot | undefined;
  readonly entries: readonly Entry[];
  /** Balances after each entry, in the same order. */
  readonly balances: readonly number[];
  /** Keyed updates that failed, with their answer (see {@linkcode Decided}). */
  readonly failures: readonly { readonly key: string; readonly decided: Decided }[];
}

const SCHEMA = `
  -- Whose database it is (branch, balance), the log it holds (log), and the ballot (view, vote).
  CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) STRICT;
  -- The log: every update that succeeded, at its position. Never trimmed below what is committed: it is
  -- also the record of which customer requests were applied (key), which makes a retry exactly-once
  -- across restarts. Entries of a replaced primary that were never committed are cut (truncate).
  CREATE TABLE IF NOT EXISTS log (
    position INTEGER PRIMARY KEY,
    view INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw')),
    amount INTEGER NOT NULL CHECK (amount >= 0),
    key TEXT,
    commit_position INTEGER NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    -- With failover: 1 for a keyed update that failed, which changes no balance (Entry.failed).
    failed INTEGER NOT NULL DEFAULT 0 CHECK (failed IN (0, 1))
  ) STRICT;
  -- Without failover, at the primary: keyed updates that failed. They take no position there.
  CREATE TABLE IF NOT EXISTS failure (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    balance INTEGER NOT NULL,
    position INTEGER NOT NULL
  ) STRICT;
`;

interface LogRow {
  readonly position: number;
  readonly view: number;
  readonly kind: "deposit" | "withdraw";
  readonly amount: number;
  readonly key: string | null;
  readonly commit_position: number;
  readonly balance: number;
  readonly failed: number;
}

interface FailureRow {
  readonly key: string;
  readonly kind: "deposit" | "withdraw";
  readonly amount: number;
  readonly balance: number;
  readonly position: number;
}

/** One branch's database, open. */
export class Storage {
  readonly #db: DatabaseSync;
  readonly #directory: string;
  readonly #balance: number;
  readonly #appendEntry: StatementSync;
  readonly #addFailure: StatementSync;
  readonly #entriesFrom: StatementSync;
  readonly #truncate: StatementSync;
  readonly #noOps: StatementSync;
  readonly #setMeta: StatementSync;
  readonly #clearMeta: StatementSync;

  private constructor(db: DatabaseSync, directory: string, balance: number) {
    this.#db = db;
    this.#directory = directory;
    this.#balance = balance;
    this.#appendEntry = db.prepare(
      "INSERT INTO log (position, view, kind, amount, key, commit_position, balance, failed) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.#addFailure = db.prepare(
      "INSERT INTO failure (key, kind, amount, balance, position) VALUES (?, ?, ?, ?, ?)",
    );
    this.#entriesFrom = db.prepare(
      "SELECT * FROM log WHERE position >= ? ORDER BY position LIMIT ?",
    );
    this.#truncate = db.prepare("DELETE FROM log WHERE position > ?");
    this.#noOps = db.prepare(
      "SELECT position FROM log WHERE failed = 1 OR (key IS NULL AND kind = 'deposit' AND amount = 0) " +
        "ORDER BY position",
    );
    this.#setMeta = db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)");
    this.#clearMeta = db.prepare("DELETE FROM meta WHERE name = ?");
  }

  /**
   * Opens (creating it if need be) the database in `directory` for `owner`. Throws an Error naming the
   * directory if it cannot be opened, or holds a different branch, or the same branch started with another
   * balance: recovering from it would not be this bank's state.
   */
  static open(directory: string, owner: StorageOwner): Storage {
    const { id, balance } = owner;
    if (directory === "") throw new Error("the data directory must not be empty");
    let db: DatabaseSync;
    try {
      Deno.mkdirSync(directory, { recursive: true });
      db = new DatabaseSync(`${directory}/${DATABASE_FILE}`);
    } catch (error) {
      throw new Error(`cannot open the data directory ${directory}: ${(error as Error).message}`);
    }
    let meta: Map<string, number>;
    try {
      // EXCLUSIVE: this process holds the database from its first transaction until it closes it, so two
      // branches can never share a directory. WAL: a transaction is one append to the log file; FULL: that
      // append is fsynced before COMMIT returns, so a reply sent after it survives a power loss, not only a
      // killed process.
      db.exec("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
      // One transaction (one fsync) creates the tables and says whose they are.
      db.exec("BEGIN IMMEDIATE");
      db.exec(SCHEMA);
      // A database from before failover has no `failed` column: every entry in it succeeded.
      const columns = db.prepare("PRAGMA table_info(log)").all() as { name: string }[];
      if (!columns.some(({ name }) => name === "failed")) {
        db.exec("ALTER TABLE log ADD COLUMN failed INTEGER NOT NULL DEFAULT 0 CHECK (failed IN (0, 1))");
      }
      meta = new Map(
        (db.prepare("SELECT name, value FROM meta").all() as { name: string; value: number }[])
          .map(({ name, value }) => [name, value]),
      );
      if (meta.size === 0) {
        db.prepare("INSERT INTO meta (name, value) VALUES ('branch', ?), ('balance', ?)").run(id, balance);
      }
      db.exec("COMMIT");
    } catch (error) {
      db.close();
      const message = (error as Error).message;
      const why = message === "database is locked" ? "another branch process is using it" : message;
      throw new Error(`cannot use ${directory}: ${why}`);
    }
    const other = meta.size === 0
      ? undefined
      : meta.get("branch") !== id
      ? `${directory} holds the data of branch ${meta.get("branch")}, not ${id}`
      : meta.get("balance") !== balance
      ? `${directory} holds branch ${id} started with balance ${meta.get("balance")}, not ${balance}`
      : undefined;
    if (other !== undefined) {
      db.close();
      throw new Error(other);
    }
    return new Storage(db, directory, balance);
  }

  /**
   * Everything the branch had made durable, to start from (see {@linkcode Recovered}). Throws an Error
   * naming the directory if the log has a gap or does not add up from the starting balance.
   */
  recover(): Recovered {
    const rows = this.#db.prepare("SELECT * FROM log ORDER BY position").all() as unknown as LogRow[];
    let balance = this.#balance;
    rows.forEach((row, index) => {
      if (row.position !== index + 1) {
        throw new Error(
          `${this.#directory}: the log has position ${row.position} where ${index + 1} belongs`,
        );
      }
      const after = row.failed === 1 ? balance : applied(balance, { kind: row.kind, amount: row.amount });
      if (after !== row.balance) {
        throw new Error(`${this.#directory}: the log does not add up at position ${row.position}`);
      }
      balance = row.balance;
    });
    const failures = this.#db.prepare("SELECT * FROM failure").all() as unknown as FailureRow[];
    const meta = new Map(
      (this.#db.prepare("SELECT name, value FROM meta WHERE name IN ('view', 'vote')").all() as {
        name: string;
        value: number;
      }[]).map(({ name, value }) => [name, value]),
    );
    const view = meta.get("view");
    return {
      ...(view === undefined ? {} : { ballot: { view, vote: meta.get("vote") } }),
      entries: rows.map((row) => ({ entry: toEntry(row), balance: row.balance })),
      failures: failures.map((row) => ({
        key: row.key,
        decided: {
          update: { kind: row.kind, amount: row.amount },
          interface: row.kind,
          success: false,
          balance: row.balance,
          position: row.position,
        },
      })),
    };
  }

  /** Writes `batch` in one transaction, durable when this returns. */
  write(batch: Batch): void {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      if (batch.truncate !== undefined) this.#truncate.run(batch.truncate);
      if (batch.ballot !== undefined) {
        const { view, vote } = batch.ballot;
        this.#setMeta.run("view", view);
        if (vote === undefined) this.#clearMeta.run("vote");
        else this.#setMeta.run("vote", vote);
      }
      batch.entries.forEach((entry, index) => {
        const { position, view, update, key, commit, failed } = entry;
        const balance = batch.balances[index] as number;
        const row = [
          position,
          view,
          update.kind,
          update.amount,
          key ?? null,
          commit,
          balance,
          failed ? 1 : 0,
        ];
        this.#appendEntry.run(...row);
      });
      for (const { key, decided } of batch.failures) {
        const { update, balance, position } = decided;
        this.#addFailure.run(key, update.kind, update.amount, balance, position);
      }
      this.#db.exec("COMMIT");
    } catch (error) {
      // A failed COMMIT may have rolled back already; the first error is the one to report.
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** How the connection writes: the journal mode ("wal") and the sync level (2: FULL). */
  durability(): { readonly journal: string; readonly synchronous: number } {
    const journal = this.#db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
    const synchronous = this.#db.prepare("PRAGMA synchronous").get() as { synchronous: number };
    return { journal: journal.journal_mode, synchronous: synchronous.synchronous };
  }

  /**
   * Which log this database holds a copy of: a random number the primary picks when it first starts, and
   * that each backup takes from its primary's first link. Undefined until then. Entries from two logs must
   * never mix: a backup refuses a link of another log.
   */
  get logId(): number | undefined {
    const row = this.#db.prepare("SELECT value FROM meta WHERE name = 'log'").get() as
      | { value: number }
      | undefined;
    return row?.value;
  }

  /** Records the id of the log this database holds (see logId): once, or again while its log is empty. */
  setLogId(id: number): void {
    this.#db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES ('log', ?)").run(id);
  }

  /** The positions of the log that hold no update that succeeded (see isNoOp), in order. */
  noOps(): number[] {
    // isNoOp as a query, so that a status does not read the whole log: a failure's entry, or a keyless
    // deposit of 0 (what a new primary starts its view with).
    const rows = this.#noOps.all() as { position: number }[];
    return rows.map(({ position }) => position);
  }

  /** Up to `limit` entries of the log from `position` on, in order (to catch a backup up). */
  entriesFrom(position: number, limit: number): Entry[] {
    return (this.#entriesFrom.all(position, limit) as unknown as LogRow[]).map(toEntry);
  }

  close(): void {
    this.#db.close();
  }
}

function toEntry(row: LogRow): Entry {
  return {
    view: row.view,
    position: row.position,
    update: { kind: row.kind, amount: row.amount },
    ...(row.key === null ? {} : { key: row.key }),
    commit: row.commit_position,
    ...(row.failed === 1 ? { failed: true as const } : {}),
  };
}
