import { AtomicFile } from "../src/atomic_file.ts";
import { assertEquals, assertMatch } from "./_assert.ts";
import { tempDir } from "./_processes.ts";

const names = (dir: string) => [...Deno.readDirSync(dir)].map(({ name }) => name).sort();

/** `dir`/out.txt holding "old", reserved, with "new" written beside it. */
async function written(dir: string): Promise<{ path: string; file: AtomicFile }> {
  const path = `${dir}/out.txt`;
  await Deno.writeTextFile(path, "old\n");
  const file = await AtomicFile.reserve(path);
  await file.write("new\n");
  return { path, file };
}

Deno.test("AtomicFile: write() leaves the target as it was; publish() replaces it whole", async () => {
  await using dir = await tempDir();
  const { path, file } = await written(dir.path);
  assertEquals(await Deno.readTextFile(path), "old\n");
  assertEquals(names(dir.path).length, 2, "the target and its temporary file");
  await file.publish();
  assertEquals(await Deno.readTextFile(path), "new\n");
  assertEquals(names(dir.path), ["out.txt"]);
});

Deno.test("AtomicFile: discard() after write() removes what was written and keeps the target", async () => {
  await using dir = await tempDir();
  const { path, file } = await written(dir.path);
  await file.discard();
  assertEquals(await Deno.readTextFile(path), "old\n");
  assertEquals(names(dir.path), ["out.txt"]);
});

Deno.test("AtomicFile: a write that fails names the target", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/sub`);
  const file = await AtomicFile.reserve(`${dir.path}/sub/out.txt`);
  await Deno.remove(`${dir.path}/sub`, { recursive: true });
  const error = await file.write("new\n").then(() => undefined, (error: Error) => error);
  assertMatch(error?.message ?? "", /^cannot write "\S+\/sub\/out\.txt": /);
});

/** The message reserve() throws for `path`. */
async function refusal(path: string): Promise<string> {
  const error = await AtomicFile.reserve(path).then(
    async (file) => {
      await file.discard();
      return undefined;
    },
    (error: Error) => error,
  );
  return error?.message ?? "reserved";
}

Deno.test("AtomicFile: reserve() says why a path cannot be written: no directory, not a directory, no file", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/file`, "");
  assertEquals(
    await refusal(`${dir.path}/missing/out.txt`),
    `directory "${dir.path}/missing" does not exist`,
  );
  assertEquals(await refusal(`${dir.path}/file/out.txt`), `"${dir.path}/file" is not a directory`);
  assertEquals(await refusal(`${dir.path}/`), "names no file");
  assertEquals(await refusal(dir.path), "is a directory");
});
