// The kernel is invisible to the notebook: what it sees of its process is what plain
// `node FILE` would show it.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');

const { KERNEL, notebook, withKernel } = require('./harness');

const TIMEOUT = { timeout: 10000 };

// The notebook reports what it sees, as one JSON line.
const PROBE = `const fs = require('fs');
const open = (fd) => { try { fs.fstatSync(fd); return true; } catch (err) { return err.code; } };
console.log(JSON.stringify({
  execArgv: process.execArgv,
  argv: process.argv,
  plan: 'TONIC_KERNEL_PLAN' in process.env,
  override: process.env.TONIC_TEST_OVERRIDE ?? null,
  added: 'TONIC_TEST_ADDED' in process.env,
  cache: Object.keys(require.cache),
  moduleCache: Object.keys(require('module')._cache),
  globals: Object.keys(globalThis).filter((name) => name.includes('tonic')),
  descriptor: Object.getOwnPropertyDescriptor(globalThis, '__tonic__') ?? null,
  names: Object.getOwnPropertyNames(globalThis).filter((name) => name.includes('tonic')),
  inGlobal: '__tonic__' in globalThis,
  main: require.main === module,
  fd3: open(3),
  fd4: open(4),
}));`;

test('the notebook sees no kernel', TIMEOUT, async () => {
  const nb = notebook([PROBE, "console.log('two');"]);
  const options = {
    // tonic's env overrides: set for node, restored by the kernel for the notebook.
    spawnEnv: { TONIC_TEST_OVERRIDE: 'tonic', TONIC_TEST_ADDED: '1' },
    env: { TONIC_TEST_OVERRIDE: 'user', TONIC_TEST_ADDED: null },
  };
  await withKernel(nb, options, async (k) => {
    await k.expect('hello');
    await k.expect('pause');
    k.go();
    await k.expect('pause');
    k.go();
    assert.equal((await k.exited).code, 0, k.stderr);
    const [line, two] = k.stdout.trim().split('\n');
    assert.equal(two, 'two');
    const seen = JSON.parse(line);
    assert.deepEqual(seen.execArgv, [], 'no -r kernel.js in process.execArgv');
    assert.deepEqual(seen.argv, [process.execPath, k.file]);
    assert.equal(seen.plan, false, 'TONIC_KERNEL_PLAN is not in process.env');
    assert.equal(seen.override, 'user');
    assert.equal(seen.added, false);
    assert.deepEqual(seen.cache, [k.file], 'require.cache holds the notebook only');
    assert.deepEqual(seen.moduleCache, [k.file]);
    assert.equal(seen.cache.includes(KERNEL), false);
    assert.deepEqual(seen.globals, [], 'no enumerable global of the kernel');
    assert.equal(seen.descriptor, null, '__tonic__ is no property of globalThis');
    assert.deepEqual(seen.names, []);
    assert.equal(seen.inGlobal, false);
    assert.equal(seen.main, true);
    assert.equal(seen.fd3, 'EBADF', "the kernel's channels are not on fds 3 and 4");
    assert.equal(seen.fd4, 'EBADF');
  });
});

test("the channels do not reach the notebook's child processes", TIMEOUT, async () => {
  // A child node lists where each of its descriptors leads.
  const list =
    "const fs = require('fs');" +
    "for (const fd of fs.readdirSync('/proc/self/fd')) {" +
    "  try { console.log(fs.readlinkSync('/proc/self/fd/' + fd)); } catch (err) {}" +
    '}';
  const nb = notebook([
    "const { execFileSync } = require('child_process');\n" +
      `process.stdout.write(execFileSync(process.execPath, ['-e', ${JSON.stringify(list)}]));`,
  ]);
  await withKernel(nb, {}, async (k) => {
    await k.expect('hello');
    await k.expect('pause');
    k.go();
    assert.equal((await k.exited).code, 0, k.stderr);
    const links = k.stdout.trim().split('\n');
    assert.ok(links.length >= 3, k.stdout);
    assert.equal(links.includes(k.cmdPath), false, 'the command pipe is not inherited');
    assert.equal(links.includes(k.evPath), false, 'the event pipe is not inherited');
  });
});
