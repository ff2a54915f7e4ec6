import { assertEquals, assertMatch, assertOk } from "./_assert.ts";
import { childPids, isRunning, makeInput, ROOT, runEntry, Running, tempDir } from "./_processes.ts";

// The expected outputs are the issue's, written by hand, not produced by this code.
const EXAMPLE_JSON = `[
{"id": 1, "recv": [{"interface": "query", "balance": 400}]},
{"id": 2, "recv": [{"interface": "deposit", "result": "success"}, {"interface": "query", "balance": 570}]},
{"id": 3, "recv": [{"interface": "withdraw", "result": "success"}, {"interface": "query", "balance": 500}]}
]
`;
const EXAMPLE_LEGACY = `{'id': 1, 'recv': [{'interface': 'query', 'result': 'success', 'money': 400}]}
{'id': 2, 'recv': [{'interface': 'deposit', 'result': 'success'}, {'interface': 'query', 'result': 'success', 'money': 570}]}
{'id': 3, 'recv': [{'interface': 'withdraw', 'result': 'success'}, {'interface': 'query', 'result': 'success', 'money': 500}]}
`;
const EXAMPLE_SEED = `{'id': 1, 'recv': [{'interface': 'query', 'success': True, 'money': 400}]}
{'id': 2, 'recv': [{'interface': 'deposit', 'success': True}, {'interface': 'query', 'success': True, 'money': 570}]}
{'id': 3, 'recv': [{'interface': 'withdraw', 'success': True}, {'interface': 'query', 'success': True, 'money': 500}]}
`;
const EXAMPLE_PER_EVENT = `[
{"id": 1, "recv": [{"interface": "query", "branch": 1, "balance": 400}]},
{"id": 2, "recv": [{"interface": "deposit", "branch": 2, "result": "success"}]},
{"id": 2, "recv": [{"interface": "query", "branch": 2, "balance": 570}]},
{"id": 3, "recv": [{"interface": "withdraw", "branch": 3, "result": "success"}]},
{"id": 3, "recv": [{"interface": "query", "branch": 3, "balance": 500}]}
]
`;

function assertAllStopped(stderr: string, expected: number): void {
  const pids = childPids(stderr);
  assertEquals(pids.length, expected, `pids reported in:\n${stderr}`);
  for (const pid of pids) assertOk(!isRunning(pid), `pid ${pid} is still running`);
}

Deno.test("main.ts writes output.txt for the shipped Input.json, and leaves no process behind", async () => {
  await using dir = await tempDir();
  const run = await runEntry("main.ts", [`${ROOT}/Input.json`, "--verbose"], dir.path);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(await Deno.readTextFile(`${dir.path}/output.txt`), EXAMPLE_JSON);
  assertAllStopped(run.stderr, 4);
  assertEquals(
    [...Deno.readDirSync(dir.path)].map((entry) => entry.name),
    ["output.txt"],
    "no temporary file left",
  );
});

Deno.test("main.ts --format legacy, seed and per-event write the other formats", async () => {
  await using dir = await tempDir();
  const formats = [["legacy", EXAMPLE_LEGACY], ["seed", EXAMPLE_SEED], ["per-event", EXAMPLE_PER_EVENT]];
  for (const [format, expected] of formats) {
    const output = `${dir.path}/${format}.txt`;
    const run = await runEntry("main.ts", [
      "run",
      `${ROOT}/Input.json`,
      "--format",
      format as string,
      "--output",
      output,
    ]);
    assertEquals(run.code, 0, run.stderr);
    assertEquals(await Deno.readTextFile(output), expected);
  }
});

Deno.test("--propagation async: a customer visiting 10 branches reads stale balances, unless it carries its session", async () => {
  await using dir = await tempDir();
  // Deposit 10 at branch k, then query branch k + 1: the query must see every deposit so far.
  const events = Array.from({ length: 10 }, (_, index) => [
    { interface: "deposit", money: 10, dest: index + 1 },
    { interface: "query", dest: (index + 1) % 10 + 1 },
  ]).flat();
  await Deno.writeTextFile(
    `${dir.path}/visit.json`,
    makeInput(10, 100, [{ id: 1, type: "customer", events }]),
  );
  const queried = async (flags: string[]) => {
    const run = await runEntry("main.ts", ["visit.json", "--format", "per-event", ...flags], dir.path);
    assertEquals(run.code, 0, run.stderr);
    const entries = JSON.parse(await Deno.readTextFile(`${dir.path}/output.txt`)) as {
      recv: { interface: string; branch: number; balance?: number }[];
    }[];
    return entries.flatMap(({ recv }) => recv).filter((reply) => reply.interface === "query");
  };
  const expected = Array.from({ length: 10 }, (_, index) => 100 + 10 * (index + 1));
  // Without the session, a branch answers from its replica at once: one the primary has not sent the
  // deposit yet (it holds entries for branches outside the quorum for up to 100 ms) misses it.
  const stale = await queried(["--propagation", "async", "--no-session"]);
  assertOk(
    stale.some((reply, index) => (reply.balance as number) < (expected[index] as number)),
    `no stale read: ${JSON.stringify(stale)}`,
  );
  // With it, each branch waits until it has applied what the customer has seen.
  const session = await queried(["--propagation", "async"]);
  assertEquals(session.map((reply) => reply.balance), expected);
  assertEquals(session.map((reply) => reply.branch), [2, 3, 4, 5, 6, 7, 8, 9, 10, 1]);
});

Deno.test("main.ts passes the course's graded shape: 50 branches, 100 customer entries", async () => {
  await using dir = await tempDir();
  const round = (kind: string) =>
    Array.from({ length: 50 }, (_, index) => ({
      id: index + 1,
      type: "customer",
      events: [{ interface: kind, money: 10 }, { interface: "query" }],
    }));
  await Deno.writeTextFile(
    `${dir.path}/in.json`,
    makeInput(50, 400, [...round("deposit"), ...round("withdraw")]),
  );
  const run = await runEntry("main.ts", ["in.json", "--output", "out.txt"], dir.path);
  assertEquals(run.code, 0, run.stderr);
  const output = JSON.parse(await Deno.readTextFile(`${dir.path}/out.txt`)) as {
    recv: { balance?: number }[];
  }[];
  const queries = output.map((entry) => entry.recv[1]?.balance);
  const expected = [
    ...Array.from({ length: 50 }, (_, index) => 410 + 10 * index),
    ...Array.from({ length: 50 }, (_, index) => 890 - 10 * index),
  ];
  assertEquals(queries, expected);
});

Deno.test("main.ts refuses bad input with one line and exit 2, starting nothing and keeping the old output", async () => {
  await using dir = await tempDir();
  const cases: [string, string | undefined, RegExp][] = [
    ["missing.json", undefined, /^missing\.json: cannot read input: file not found$/],
    ["empty.json", "", /^empty\.json: empty file/],
    ["broken.json", '[{"id": 1,}]', /^broken\.json: line 1 column 11: invalid JSON: /],
    ["object.json", "{}", /^object\.json: expected a JSON array/],
    [
      "money.json",
      makeInput(1, 1, [{ id: 1, type: "customer", events: [{ interface: "deposit", money: -5 }] }]),
      /^money\.json: \[0\]\.events\[0\]\.money: expected a non-negative safe integer, got -5$/,
    ],
    [
      "route.json",
      makeInput(1, 1, [{ id: 1, type: "customer", events: [{ interface: "query", dest: 4 }] }]),
      /^route\.json: \[0\]\.events\[0\]\.dest: branch 4 does not exist$/,
    ],
  ];
  await Deno.writeTextFile(`${dir.path}/output.txt`, "previous output\n");
  await Deno.mkdir(`${dir.path}/folder.json`);
  await Deno.writeFile(`${dir.path}/binary.json`, new Uint8Array([0xff, 0xfe, 0x5b]));
  cases.push(["folder.json", undefined, /^folder\.json: cannot read input: is a directory$/]);
  cases.push(["binary.json", undefined, /^binary\.json: not UTF-8 text, expected a JSON array/]);
  for (const [name, text, expected] of cases) {
    if (text !== undefined) await Deno.writeTextFile(`${dir.path}/${name}`, text);
    const run = await runEntry("main.ts", [name, "--verbose"], dir.path);
    assertEquals(run.code, 2, `${name}: ${run.stderr}`);
    assertEquals(run.stderr.trimEnd().split("\n").length, 1, `${name}: one line, got:\n${run.stderr}`);
    assertMatch(run.stderr.trimEnd(), expected);
    assertEquals(childPids(run.stderr), [], "no process started");
  }
  assertEquals(await Deno.readTextFile(`${dir.path}/output.txt`), "previous output\n");
  assertOk(
    ![...Deno.readDirSync(dir.path)].some((entry) => entry.name.endsWith(".tmp")),
    "no temporary file left",
  );
});

Deno.test("main.ts refuses two of its files at one path, or its output at the input, before starting anything", async () => {
  await using dir = await tempDir();
  await Deno.copyFile(`${ROOT}/Input.json`, `${dir.path}/in.json`);
  for (
    const [args, message] of [
      [["--output", "same.txt", "--history", "same.txt"], "same.txt: named by both --output and --history"],
      [["--output", "in.json"], "in.json: named by both the input and --output"],
      [
        ["--clock-output", "clocks", "--diagram", "clocks/all_events.json"],
        "clocks/all_events.json: named by both --diagram and --clock-output",
      ],
    ] as const
  ) {
    const run = await runEntry("main.ts", ["in.json", ...args], dir.path);
    assertEquals(run.code, 2, run.stderr);
    assertMatch(run.stderr, new RegExp(`^\\S*${message}: each needs a file of its own\\n$`));
    assertEquals([...Deno.readDirSync(dir.path)].map(({ name }) => name), ["in.json"], "nothing written");
  }
  assertEquals(await Deno.readTextFile(`${dir.path}/in.json`), await Deno.readTextFile(`${ROOT}/Input.json`));
});

Deno.test("main.ts on SIGINT while it stops its children, after every result is in, writes nothing and exits 130", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/out.txt`, "old\n");
  // Customers of branches 1 and 2 only, so that branch 3, a backup outside the quorum, can be paused.
  const customers = [1, 2].map((id) => ({
    id,
    type: "customer",
    events: [{ interface: "deposit", money: 1 }],
  }));
  await Deno.writeTextFile(`${dir.path}/in.json`, makeInput(3, 400, customers));
  const main = new Running("main.ts", ["in.json", "--output", "out.txt", "--verbose"], dir.path);
  const listening = await main.waitFor(/branch 3 \(pid \d+\) listening/);
  const paused = Number(/pid (\d+)/.exec(listening ?? "")?.[1]);
  try {
    assertOk(await main.waitFor(/all 3 branches serving/), "the run started");
    // Paused, branch 3 keeps main waiting out its grace period as it stops the children: the signal's window.
    Deno.kill(paused, "SIGSTOP");
    assertOk(await main.waitFor(/all 2 customer entries done/), "every result is in");
    main.process.kill("SIGINT");
    const run = await main.finish();
    assertEquals(run.code, 130, run.stderr);
    assertMatch(run.stderr, /bank: interrupted/);
    assertEquals(await Deno.readTextFile(`${dir.path}/out.txt`), "old\n", "the old output is kept");
    assertEquals([...Deno.readDirSync(dir.path)].map(({ name }) => name).sort(), ["in.json", "out.txt"]);
  } finally {
    try {
      Deno.kill(paused, "SIGKILL"); // Main kills it as it stops; this is for a failed assertion.
    } catch {
      // Gone already, as it should be.
    }
    await main.finish();
  }
});

Deno.test("main.ts writes a new output file as 0644 and keeps the mode of a file it replaces", async () => {
  await using dir = await tempDir();
  const fresh = await runEntry("main.ts", [`${ROOT}/Input.json`, "--output", `${dir.path}/new.txt`]);
  assertEquals(fresh.code, 0, fresh.stderr);
  assertEquals((await Deno.stat(`${dir.path}/new.txt`)).mode! & 0o777, 0o644);
  await Deno.writeTextFile(`${dir.path}/old.txt`, "old\n", { mode: 0o640 });
  await Deno.chmod(`${dir.path}/old.txt`, 0o640);
  const replaced = await runEntry("main.ts", [`${ROOT}/Input.json`, "--output", `${dir.path}/old.txt`]);
  assertEquals(replaced.code, 0, replaced.stderr);
  assertEquals((await Deno.stat(`${dir.path}/old.txt`)).mode! & 0o777, 0o640);
  assertEquals(await Deno.readTextFile(`${dir.path}/old.txt`), EXAMPLE_JSON);
});

Deno.test("two runs at once on one machine do not collide", async () => {
  await using dir = await tempDir();
  const runs = await Promise.all(
    ["a.txt", "b.txt"].map((output) =>
      runEntry("main.ts", [`${ROOT}/Input.json`, "--output", `${dir.path}/${output}`])
    ),
  );
  for (const run of runs) assertEquals(run.code, 0, run.stderr);
  assertEquals(await Deno.readTextFile(`${dir.path}/a.txt`), EXAMPLE_JSON);
  assertEquals(await Deno.readTextFile(`${dir.path}/b.txt`), EXAMPLE_JSON);
});

Deno.test("main.ts refuses an output path that cannot be written, before starting anything", async () => {
  await using dir = await tempDir();
  const run = await runEntry("main.ts", [
    `${ROOT}/Input.json`,
    "--output",
    `${dir.path}/no/such/dir/out.txt`,
  ]);
  assertEquals(run.code, 2);
  assertMatch(run.stderr.trimEnd(), /^\S+out\.txt: cannot write output: directory "\S+dir" does not exist$/);
  // /proc exists but makes no files (ENOENT, as if it did not exist).
  const proc = await runEntry("main.ts", [`${ROOT}/Input.json`, "--output", "/proc/out.txt"]);
  assertEquals([proc.code, proc.stderr.trimEnd()], [
    2,
    '/proc/out.txt: cannot write output: cannot make a file in "/proc"',
  ]);
});

Deno.test("main.ts refuses unknown flags, formats and ports past 65535 as usage errors", async () => {
  const flag = await runEntry("main.ts", [`${ROOT}/Input.json`, "--colour"]);
  assertEquals(flag.code, 2);
  assertMatch(flag.stderr, /^bank: Unknown option '--colour'/);
  const format = await runEntry("main.ts", [`${ROOT}/Input.json`, "--format", "xml"]);
  assertEquals(format.code, 2);
  assertMatch(format.stderr, /--format: expected one of json, legacy, seed, per-event/);
  const propagation = await runEntry("main.ts", [`${ROOT}/Input.json`, "--propagation", "eventual"]);
  assertEquals(propagation.code, 2);
  assertMatch(propagation.stderr, /--propagation: expected sync or async, got "eventual"/);
  // Deno itself refuses --allow-net for a port past 65535, with a stack trace: checked before that.
  const portBase = await runEntry("main.ts", [`${ROOT}/Input.json`, "--port-base", "65534"]);
  assertEquals(portBase.code, 2);
  assertMatch(
    portBase.stderr,
    /^bank: --port-base: branch 2 would listen on port 65536 \(65534 \+ 2\), past 65535/,
  );
  const peer = await runEntry("branch.ts", ["--id", "1", "--peer", "2=127.0.0.1:99999"]);
  assertEquals(peer.code, 2);
  assertMatch(peer.stderr, /^branch: --peer: port 99999 of "127.0.0.1:99999" is not between 1 and 65535/);
});

Deno.test("every entry file run without permissions says which one it lacks in one line, exit 2", async () => {
  for (
    const [entry, args] of [["main.ts", ["Input.json"]], ["branch.ts", ["--id", "1"]], ["customer.ts", [
      "Input.json",
    ]]] as const
  ) {
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `--config=${ROOT}/deno.json`, `${ROOT}/${entry}`, ...args],
      cwd: ROOT,
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assertEquals(run.code, 2, `${entry}: ${stderr}`);
    assertMatch(
      stderr,
      /^[^\n]*Requires (read|env) access to "[^"]+", run again with the --allow-(read|env) flag\n$/,
    );
  }
});

Deno.test("main.ts fails with exit 1 naming the branch whose port is taken, and stops the others", async () => {
  await using dir = await tempDir();
  using taken = listenBetweenFreePorts();
  const base = (taken.addr as Deno.NetAddr).port - 2; // Branch 2 of the example gets the taken port.
  const run = await runEntry(
    "main.ts",
    [`${ROOT}/Input.json`, "--port-base", String(base), "--verbose"],
    dir.path,
  );
  assertEquals(run.code, 1, run.stderr);
  assertMatch(
    run.stderr,
    /branch 2 \(pid \d+\) exited with code 1( before it reported its address)?; its stderr ended with:\n.*cannot listen on 127\.0\.0\.1:\d+/,
  );
  assertEquals([...Deno.readDirSync(dir.path)], [], "no output written");
  for (const pid of [...run.stderr.matchAll(/pid (\d+)/g)].map((match) => Number(match[1]))) {
    assertOk(!isRunning(pid), `pid ${pid} is still running`);
  }
});

Deno.test("main.ts --port-base N runs the example on ports N + id, each process allowed only those ports", async () => {
  await using dir = await tempDir();
  const base = freeRunOfPorts(3) - 1;
  const run = await runEntry(
    "main.ts",
    [`${ROOT}/Input.json`, "--port-base", String(base), "--verbose"],
    dir.path,
  );
  assertEquals(run.code, 0, run.stderr);
  assertEquals(await Deno.readTextFile(`${dir.path}/output.txt`), EXAMPLE_JSON);
  for (const id of [1, 2, 3]) {
    assertMatch(
      run.stderr,
      new RegExp(`branch ${id} \\(pid \\d+\\) listening on 127\\.0\\.0\\.1:${base + id}\\b`),
    );
  }
  assertAllStopped(run.stderr, 4);
});

/** The first of `count` consecutive loopback ports that were free a moment ago. */
function freeRunOfPorts(count: number): number {
  for (let attempt = 1;; attempt++) {
    const listeners = [Deno.listen({ hostname: "127.0.0.1", port: 0 })];
    const first = (listeners[0]?.addr as Deno.NetAddr).port;
    try {
      for (let port = first + 1; port < first + count; port++) {
        listeners.push(Deno.listen({ hostname: "127.0.0.1", port }));
      }
      return first;
    } catch (error) {
      if (attempt === 20) throw error;
    } finally {
      for (const listener of listeners) listener.close();
    }
  }
}

/**
 * A listener on a port whose neighbours are free as far as can be told (any port may be taken by another
 * process at any moment): for a test in which only the middle one of three must be taken.
 */
function listenBetweenFreePorts(): Deno.TcpListener {
  for (let attempt = 1;; attempt++) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    try {
      for (const neighbour of [port - 1, port + 1]) {
        Deno.listen({ hostname: "127.0.0.1", port: neighbour }).close();
      }
      return listener;
    } catch (error) {
      listener.close();
      if (attempt === 20) throw error;
    }
  }
}

/** An input long enough that a run is surely still going when the test interferes with it. */
async function longInput(path: string): Promise<void> {
  const events = Array.from(
    { length: 200_000 },
    (_, index) => ({ interface: index % 2 ? "query" : "deposit", money: 1 }),
  );
  await Deno.writeTextFile(path, makeInput(3, 0, [{ id: 1, type: "customer", events }]));
}

Deno.test("main.ts fails with exit 1 when a branch is killed mid-run, stops every process, writes nothing", async () => {
  await using dir = await tempDir();
  await longInput(`${dir.path}/long.json`);
  const main = new Running("main.ts", ["long.json", "--verbose"], dir.path);
  assertOk(await main.waitFor(/all 3 branches serving/), "the run started");
  const branch2 = /branch 2 \(pid (\d+)\)/.exec(main.stderrLines.join("\n"))?.[1];
  assertOk(branch2 !== undefined);
  Deno.kill(Number(branch2), "SIGKILL");
  const run = await main.finish();
  assertEquals(run.code, 1, run.stderr);
  assertMatch(run.stderr, /bank: (branch 2 \(pid \d+\) was killed by SIGKILL|customer process .*branch 2)/);
  assertAllStopped(run.stderr, 4);
  assertEquals(
    [...Deno.readDirSync(dir.path)].map((entry) => entry.name),
    ["long.json"],
    "no output written",
  );
});

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`main.ts stops every process and exits ${code} on ${signal}, writing nothing and removing its data`, async () => {
    await using dir = await tempDir();
    await using tmp = await tempDir();
    await longInput(`${dir.path}/long.json`);
    const main = new Running("main.ts", ["long.json", "--verbose"], dir.path, { TMPDIR: tmp.path });
    const data = (await main.waitFor(/branch data in /))?.replace(/.*branch data in /, "");
    assertOk(data?.startsWith(`${tmp.path}/bank-data-`), `data in ${data}`);
    assertOk(await main.waitFor(/all 3 branches serving/), "the run started");
    main.process.kill(signal);
    const run = await main.finish();
    assertEquals(run.code, code, run.stderr);
    assertMatch(run.stderr, signal === "SIGINT" ? /bank: interrupted/ : /bank: terminated/);
    assertAllStopped(run.stderr, 4);
    assertEquals(
      [...Deno.readDirSync(dir.path)].map((entry) => entry.name),
      ["long.json"],
      "no output written",
    );
    assertEquals([...Deno.readDirSync(tmp.path)], [], "the temporary data directory is removed");
  });
}

// After the example, each branch holds 500; the second run goes on from there (hand-computed).
const EXAMPLE_AGAIN = `[
{"id": 1, "recv": [{"interface": "query", "balance": 500}]},
{"id": 2, "recv": [{"interface": "deposit", "result": "success"}, {"interface": "query", "balance": 670}]},
{"id": 3, "recv": [{"interface": "withdraw", "result": "success"}, {"interface": "query", "balance": 600}]}
]
`;

Deno.test("main.ts --data-dir: a second run goes on from the first; another starting balance is refused", async () => {
  await using dir = await tempDir();
  const args = [`${ROOT}/Input.json`, "--data-dir", "data"];
  assertEquals((await runEntry("main.ts", args, dir.path)).code, 0);
  assertEquals(
    [...Deno.readDirSync(`${dir.path}/data`)].map((entry) => entry.name).sort(),
    ["branch-1", "branch-2", "branch-3"],
  );
  const again = await runEntry("main.ts", args, dir.path);
  assertEquals(again.code, 0, again.stderr);
  assertEquals(await Deno.readTextFile(`${dir.path}/output.txt`), EXAMPLE_AGAIN);
  const other = (await Deno.readTextFile(`${ROOT}/Input.json`)).replaceAll(
    '"balance": 400',
    '"balance": 300',
  );
  await Deno.writeTextFile(`${dir.path}/other.json`, other);
  const refused = await runEntry(
    "main.ts",
    ["other.json", "--data-dir", "data", "--output", "other.txt"],
    dir.path,
  );
  assertEquals(refused.code, 1, refused.stderr);
  assertMatch(refused.stderr, /data\/branch-\d holds branch \d started with balance 400, not 300/);
  assertOk(!(await Deno.stat(`${dir.path}/other.txt`).then(() => true, () => false)), "no output written");
});

Deno.test("main.ts removes the temporary data directory it made after a successful run", async () => {
  await using dir = await tempDir();
  await using tmp = await tempDir();
  const run = await runEntry("main.ts", [`${ROOT}/Input.json`, "--verbose"], dir.path, { TMPDIR: tmp.path });
  assertEquals(run.code, 0, run.stderr);
  assertMatch(run.stderr, new RegExp(`branch data in ${tmp.path}/bank-data-`));
  assertEquals([...Deno.readDirSync(tmp.path)], []);
});
