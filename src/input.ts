/**
 * Reading and validating an input file: a JSON array of branch and customer entries.
 *
 * Every problem becomes an {@linkcode InputError} whose message names the file and the JSON path, so that
 * a person can find it: `Input.json: [4].events[0].money: expected a non-negative safe integer, got -5`.
 *
 * @module
 */

/** What a customer's event asks a branch to do. */
export type Interface = "query" | "deposit" | "withdraw";

/** The interfaces a customer's event may name. */
export const INTERFACES: readonly Interface[] = ["query", "deposit", "withdraw"];

/** One line of a customer's script. */
export interface Event {
  /** The event's id from the input, when it has one. */
  readonly id: number | undefined;
  readonly interface: Interface;
  /** The amount in units; 0 for a query. */
  readonly amount: number;
  /** The id of the branch the event goes to. */
  readonly branch: number;
}

/** One customer entry of the input: a customer id and the events it runs, in order. */
export interface CustomerEntry {
  readonly id: number;
  readonly events: readonly Event[];
}

/** One branch of the input, with its starting balance in units. */
export interface BranchSpec {
  readonly id: number;
  readonly balance: number;
}

/** A validated input: the branches and the customer entries, each in input order. */
export interface Scenario {
  readonly branches: readonly BranchSpec[];
  readonly customers: readonly CustomerEntry[];
}

/** The input cannot be used; the message says where and why, on one line. */
export class InputError extends Error {
  /**
   * @param source The file name as the user gave it.
   * @param where A JSON path such as `[4].events[0].money`, or a location such as `line 3 column 2`.
   * @param problem What is wrong there.
   */
  constructor(source: string, where: string, problem: string) {
    super(where === "" ? `${source}: ${problem}` : `${source}: ${where}: ${problem}`);
    this.name = "InputError";
  }
}

/** Reads and validates the input file at `path`. Throws {@linkcode InputError}. */
export async function readScenario(path: string): Promise<Scenario> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new InputError(path, "", `cannot read input: ${describeFsError(error)}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new InputError(path, "", "not UTF-8 text, expected a JSON array of branches and customers");
  }
  return parseScenario(text, path);
}

/** Parses and validates the text of an input file. `source` names it in errors. */
export function parseScenario(text: string, source: string): Scenario {
  if (text.trim() === "") {
    throw new InputError(source, "", "empty file, expected a JSON array of branches and customers");
  }
  let json: unknown;
  try {
    json = JSON.parse(text, keepInexact);
  } catch (error) {
    throw jsonSyntaxError(source, text, error);
  }
  return validateScenario(json, source);
}

/**
 * A number of the input that is not exactly a safe integer, as written: a fraction, a number beyond 2^53 - 1,
 * or one with more digits than a double holds. JSON.parse would read 1.0000000000000001 as 1 and
 * 9007199254740993 as 9007199254740992; validation refuses this instead, quoting the text.
 */
class InexactNumber {
  constructor(readonly text: string) {}
}

/** JSON.parse's reviver: a number that is not exactly a safe integer becomes an InexactNumber. */
function keepInexact(_key: string, value: unknown, context?: { readonly source?: string }): unknown {
  const text = context?.source;
  if (typeof value !== "number" || text === undefined) return value;
  return Number.isSafeInteger(value) && denotes(text, value) ? value : new InexactNumber(text);
}

/** Whether the JSON number `text` is exactly the safe integer `value` (400, 400.0 and 4e2 are 400). */
function denotes(text: string, value: number): boolean {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (match === null) return false;
  const [, sign = "", whole = "", fraction = "", exponent = "0"] = match;
  const digits = `${whole}${fraction}`.replace(/^0+/, "");
  if (digits === "") return value === 0;
  // The text is digits * 10^shift: an integer only if every digit below the point is 0.
  const shift = Number(exponent) - fraction.length;
  if (shift > 16) return false; // At least 10^17: beyond any safe integer.
  if (shift >= 0) return BigInt(`${sign}${digits}`) * 10n ** BigInt(shift) === BigInt(value);
  const point = digits.length + shift;
  if (point <= 0 || !/^0*$/.test(digits.slice(point))) return false;
  return BigInt(`${sign}${digits.slice(0, point)}`) === BigInt(value);
}

/** Validates parsed JSON as a scenario. `source` names it in errors. */
export function validateScenario(json: unknown, source: string): Scenario {
  const fail = (where: string, problem: string): never => {
    throw new InputError(source, where, problem);
  };
  if (!Array.isArray(json)) {
    return fail("", `expected a JSON array of branches and customers, got ${describe(json)}`);
  }
  const branches: BranchSpec[] = [];
  const rawCustomers: { readonly at: string; readonly entry: Record<string, unknown> }[] = [];
  json.forEach((entry: unknown, index: number) => {
    const at = `[${index}]`;
    if (!isRecord(entry)) return fail(at, `expected an object, got ${describe(entry)}`);
    const type = entry.type;
    if (type === undefined) return fail(`${at}.type`, `missing, expected "branch" or "customer"`);
    if (type === "branch") {
      const id = safeInteger(entry.id, `${at}.id`, fail);
      if (branches.some((branch) => branch.id === id)) fail(`${at}.id`, `duplicate branch id ${id}`);
      const balance = safeInteger(entry.balance, `${at}.balance`, fail);
      // Every branch holds a replica of one account, which the primary decides updates against: replicas
      // that start apart could never agree (a backup refuses an entry that would take it below zero).
      const first = branches[0];
      if (first !== undefined && balance !== first.balance) {
        fail(
          `${at}.balance`,
          `expected ${first.balance}, the balance branch ${first.id} starts with (every branch holds a replica of one account), got ${balance}`,
        );
      }
      branches.push({ id, balance });
    } else if (type === "customer") {
      rawCustomers.push({ at, entry });
    } else {
      fail(`${at}.type`, `expected "branch" or "customer", got ${describe(type)}`);
    }
  });
  if (branches.length === 0) {
    fail("", 'no branches: the input needs at least one entry with "type": "branch"');
  }
  const branchIds = new Set(branches.map((branch) => branch.id));
  const customers = rawCustomers.map(({ at, entry }) => validateCustomer(entry, at, branchIds, fail));
  return { branches, customers };
}

type Fail = (where: string, problem: string) => never;

function validateCustomer(
  entry: Record<string, unknown>,
  at: string,
  branchIds: ReadonlySet<number>,
  fail: Fail,
): CustomerEntry {
  const id = safeInteger(entry.id, `${at}.id`, fail);
  // The logical-clock exercise of the same course names the list "customer-requests", and each event's id
  // "customer-request-id".
  if (entry.events !== undefined && entry["customer-requests"] !== undefined) {
    fail(at, 'both "events" and "customer-requests": expected one list of events');
  }
  const field = entry["customer-requests"] !== undefined ? "customer-requests" : "events";
  const listAt = field === "events" ? `${at}.events` : `${at}["customer-requests"]`;
  const events = entry[field];
  if (events === undefined) {
    fail(`${at}.events`, 'missing, expected an array of events (or "customer-requests")');
  }
  if (!Array.isArray(events)) {
    return fail(listAt, `expected an array of events, got ${describe(events)}`);
  }
  return {
    id,
    events: events.map((event: unknown, index: number) => {
      const eventAt = `${listAt}[${index}]`;
      if (!isRecord(event)) return fail(eventAt, `expected an object, got ${describe(event)}`);
      return validateEvent(event, eventAt, id, branchIds, fail);
    }),
  };
}

function validateEvent(
  event: Record<string, unknown>,
  at: string,
  customerId: number,
  branchIds: ReadonlySet<number>,
  fail: Fail,
): Event {
  if (event.id !== undefined && event["customer-request-id"] !== undefined) {
    fail(at, 'both "id" and "customer-request-id": expected one event id');
  }
  const idField = event["customer-request-id"] !== undefined ? "customer-request-id" : "id";
  const idAt = idField === "id" ? `${at}.id` : `${at}["customer-request-id"]`;
  const eventId = event[idField] === undefined ? undefined : safeInteger(event[idField], idAt, fail);
  const name = event.interface;
  if (name === undefined) fail(`${at}.interface`, `missing, expected one of ${INTERFACES.join(", ")}`);
  if (!INTERFACES.includes(name as Interface)) {
    fail(`${at}.interface`, `expected one of ${INTERFACES.join(", ")}, got ${describe(name)}`);
  }
  const kind = name as Interface;
  // Older inputs carry a meaningless `money` on queries: it is ignored, whatever it holds.
  const amount = kind === "query" ? 0 : safeInteger(event.money, `${at}.money`, fail);
  return { id: eventId, interface: kind, amount, branch: route(event, at, customerId, branchIds, fail) };
}

/** The branch an event goes to: its `dest` (or `branch`), else the branch with the customer's id. */
function route(
  event: Record<string, unknown>,
  at: string,
  customerId: number,
  branchIds: ReadonlySet<number>,
  fail: Fail,
): number {
  const dest = event.dest === undefined ? undefined : safeInteger(event.dest, `${at}.dest`, fail);
  const branch = event.branch === undefined ? undefined : safeInteger(event.branch, `${at}.branch`, fail);
  if (dest !== undefined && branch !== undefined && dest !== branch) {
    fail(at, `"dest" (${dest}) and "branch" (${branch}) name different branches`);
  }
  const target = dest ?? branch;
  if (target === undefined) {
    if (!branchIds.has(customerId)) {
      fail(at, `no "dest" and no branch ${customerId} (the customer's own id) to default to`);
    }
    return customerId;
  }
  if (!branchIds.has(target)) {
    fail(`${at}.${dest !== undefined ? "dest" : "branch"}`, `branch ${target} does not exist`);
  }
  return target;
}

function safeInteger(value: unknown, where: string, fail: Fail): number {
  if (value === undefined) return fail(where, "missing, expected a non-negative safe integer");
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0 || Object.is(value, -0)) {
    return fail(where, `expected a non-negative safe integer, got ${describe(value)}`);
  }
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof InexactNumber);
}

/** A short rendering of a JSON value for an error message. */
function describe(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  if (value instanceof InexactNumber) return value.text;
  if (typeof value === "object") return "an object";
  // JSON.parse reads a number beyond a double's range, such as 1e400, as Infinity, which JSON.stringify
  // would render as null.
  if (typeof value === "number" && !Number.isFinite(value)) return "a number beyond a double's range";
  if (Object.is(value, -0)) return "-0";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** Turns V8's JSON.parse error into one located by line and column. */
function jsonSyntaxError(source: string, text: string, error: unknown): InputError {
  const message = error instanceof Error ? error.message : String(error);
  const located = /^(.*?)(?: in JSON)? at position (\d+)(?: \(line (\d+) column (\d+)\))?/.exec(message);
  if (located === null) {
    // V8 gives no position when the text ends early ("Unexpected end of JSON input").
    const lines = text.split("\n");
    const where = `line ${lines.length} column ${(lines.at(-1) ?? "").length + 1}`;
    return new InputError(source, where, `invalid JSON: ${message}`);
  }
  const [, problem, position, line, column] = located;
  const where = line !== undefined && column !== undefined
    ? `line ${line} column ${column}`
    : lineAndColumn(text, Number(position));
  return new InputError(source, where, `invalid JSON: ${problem}`);
}

function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split("\n");
  return `line ${before.length} column ${(before.at(-1) ?? "").length + 1}`;
}

/** A one-line reason for a failed file operation, without a stack trace. */
export function describeFsError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "file not found";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  if (error instanceof Error) return error.message.split("\n")[0] ?? error.name;
  return String(error);
}

/** The scenario as input-file JSON, every event with an explicit `dest`: what main hands a customer process. */
export function scenarioToJson(scenario: Scenario): unknown[] {
  return [
    ...scenario.branches.map((branch) => ({ type: "branch", id: branch.id, balance: branch.balance })),
    ...scenario.customers.map((customer) => ({
      type: "customer",
      id: customer.id,
      events: customer.events.map((event) => ({
        ...(event.id === undefined ? {} : { id: event.id }),
        interface: event.interface,
        money: event.amount,
        dest: event.branch,
      })),
    })),
  ];
}
