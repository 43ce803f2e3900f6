// The kernel's messages, end to end: hello, a pause per cell (its time, value and
// modules), go, eval with an edited suffix, error events; no event says how node exits
// (tonic's init does).
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');

const { notebook, site, suffixSite, withKernel } = require('./harness');

const TIMEOUT = { timeout: 10000 };

test('hello, then a pause per cell; go runs the next cell', TIMEOUT, async () => {
  const nb = {
    original:
      "const helper = require('./helper');\nconsole.log('one');\n\n" +
      "const a = helper.n;\nconsole.log('two');\na + 41\n\n" +
      "console.log('three');\n",
    // As instrument(values=True) writes it: each cell's value is captured by a
    // `;__tonic__.v=` at the end of the line above its last expression.
    source:
      "const helper = require('./helper');;__tonic__.v=\nconsole.log('one');\n" +
      `${site(1)}\n` +
      "const a = helper.n;\nconsole.log('two');;__tonic__.v=\na + 41\n" +
      `${site(2)};__tonic__.v=\n` +
      "console.log('three');\n" +
      `\n${site(3)}\n`,
  };
  const options = {
    values: [1, 2, 3],
    inspect: true,
    snapshots: true,
    files: { 'helper.js': 'exports.n = 1;\n' },
  };
  await withKernel(nb, options, async (k) => {
    assert.deepEqual(await k.expect('hello'), { ev: 'hello', pid: k.pid, kind: 'cjs' });

    const first = await k.expect('pause');
    assert.deepEqual(Object.keys(first), ['ev', 'cell', 'ms', 'modules', 'value', 'seen']);
    assert.equal(first.cell, 1);
    // what cell 1 used: require's lookups of ./helper (snapshot runs)
    assert.ok(first.seen.probes.some((p) => p.endsWith('/helper.js')), first.seen.probes);
    assert.equal(first.seen.all, false);
    assert.equal(first.value, 'undefined');
    assert.equal(typeof first.ms, 'number');
    assert.ok(first.ms >= 0);
    assert.deepEqual(first.modules, [path.join(k.dir, 'helper.js')]);
    assert.equal(await k.stdoutIs('one\n'), 'one\n');
    k.go();

    const second = await k.expect('pause');
    assert.deepEqual(Object.keys(second), ['ev', 'cell', 'ms', 'modules', 'value', 'seen']);
    assert.equal(second.cell, 2);
    assert.equal(second.value, '42');
    assert.deepEqual(second.modules, []);
    assert.equal(await k.stdoutIs('one\ntwo\n'), 'one\ntwo\n');
    k.go();

    const third = await k.expect('pause');
    assert.equal(third.cell, 3);
    assert.equal(third.value, 'undefined');
    k.go();
    assert.equal(await k.next(), null);
    assert.deepEqual(await k.exited, { code: 0, signal: null });
    assert.equal(k.stdout, 'one\ntwo\nthree\n');
  });
});

test('without snapshots or inspection, a pause says only cell and time', TIMEOUT, async () => {
  const nb = notebook(['console.log(1)', '2 + 2']);
  await withKernel(nb, {}, async (k) => {
    await k.expect('hello');
    const pause = await k.expect('pause');
    assert.deepEqual(Object.keys(pause), ['ev', 'cell', 'ms']);
    k.go();
    assert.equal((await k.expect('pause')).cell, 2);
    k.go();
    assert.equal(await k.next(), null, 'no event after the last pause');
    assert.equal((await k.exited).code, 0);
  });
});

test('eval continues with an edited suffix in the same process', TIMEOUT, async () => {
  const nb = notebook([
    "let a = 1;\nconsole.log('one', a);",
    "console.log('two');",
    "console.log('three');",
  ]);
  // The edited file's cells 2 and 3, as pause 1 evaluates them; cell 3's value recorded.
  const suffix =
    '__tonic_suffix_1__:{\n' +
    "a += 1;\nconsole.log('edited', a);\n" +
    `${suffixSite(2, 1)};__tonic__.v=\n` +
    'a * 10\n' +
    `\n${suffixSite(3, 1)}\n` +
    '}';
  await withKernel(nb, { inspect: true, snapshots: true }, async (k) => {
    await k.expect('hello');
    assert.equal((await k.expect('pause')).cell, 1);
    k.send({ op: 'eval', source: suffix, values: [3], check: 'let a = 1;\n' });
    await k.expect('continuing'); // the check passed
    assert.equal((await k.expect('pause')).cell, 2);
    assert.equal(await k.stdoutIs('one 1\nedited 2\n'), 'one 1\nedited 2\n');
    k.go();
    const third = await k.expect('pause');
    assert.equal(third.cell, 3);
    assert.equal(third.value, '20');
    k.go();
    assert.deepEqual(await k.exited, { code: 0, signal: null });
    assert.equal(k.stdout, 'one 1\nedited 2\n', "the original cells 2 and 3 never run");
  });
});

test('an edited file that does not compile: an early error, then SIGKILL', TIMEOUT, async () => {
  const nb = notebook(["console.log('one');", "console.log('two');"]);
  await withKernel(nb, { inspect: true }, async (k) => {
    await k.expect('hello');
    await k.expect('pause');
    k.send({ op: 'eval', source: "console.log('never');", check: 'let x = ;\n' });
    const error = await k.expect('error');
    assert.deepEqual(Object.keys(error), ['ev', 'after', 'origin', 'error', 'ms']);
    assert.equal(error.after, 1);
    assert.equal(error.origin, 'early');
    assert.equal(error.ms, 0);
    // Described as node describes an early error: the file's line, then the error.
    assert.ok(error.error.startsWith(`${k.file}:1\nlet x = ;\n`), error.error);
    assert.match(error.error, /\n\nSyntaxError: Unexpected token ';'\n/);
    assert.deepEqual(await k.exited, { code: null, signal: 'SIGKILL' });
    assert.equal(k.stdout, 'one\n');
  });
});

test('an uncaught error: an error event after the last pause, then exit', TIMEOUT, async () => {
  const nb = notebook(["console.log('one');", "throw new Error('boom');"]);
  await withKernel(nb, { inspect: true, snapshots: true }, async (k) => {
    await k.expect('hello');
    await k.expect('pause');
    k.go();
    const error = await k.expect('error');
    assert.equal(error.after, 1);
    assert.equal(error.origin, 'uncaughtException');
    assert.match(error.error, /^Error: boom\n {4}at /);
    assert.equal(typeof error.ms, 'number');
    assert.deepEqual(await k.exited, { code: 1, signal: null });
    assert.match(k.stderr, /Error: boom/);
  });
});

test('errors are not described unless the plan asks to inspect', TIMEOUT, async () => {
  const nb = notebook(['Promise.reject(new Error("later"));']);
  await withKernel(nb, {}, async (k) => {
    await k.expect('hello');
    assert.equal((await k.expect('pause')).cell, 1);
    k.go();
    const error = await k.expect('error');
    assert.equal(error.after, 1);
    assert.equal(error.origin, 'unhandledRejection');
    assert.equal(error.error, null);
    assert.equal((await k.exited).code, 1);
  });
});

test('an exit code: the last pause, then no event', TIMEOUT, async () => {
  const nb = notebook(['process.exitCode = 3;', "console.log('done');"]);
  await withKernel(nb, { snapshots: true }, async (k) => {
    await k.expect('hello');
    await k.expect('pause');
    k.go();
    await k.expect('pause');
    k.go();
    assert.equal(await k.next(), null);
    assert.equal((await k.exited).code, 3);
  });
});

test('an ES module pauses as well', TIMEOUT, async () => {
  const cells = [
    "const a = await Promise.resolve(5);\nconsole.log('one', a);",
    'console.log(a * 2);',
  ];
  const nb = notebook(cells, { esm: true });
  await withKernel(nb, { kind: 'esm' }, async (k) => {
    assert.equal((await k.expect('hello')).kind, 'esm');
    assert.equal((await k.expect('pause')).cell, 1);
    assert.equal(await k.stdoutIs('one 5\n'), 'one 5\n');
    k.go();
    assert.equal((await k.expect('pause')).cell, 2);
    k.go();
    assert.deepEqual(await k.exited, { code: 0, signal: null });
    assert.equal(k.stdout, 'one 5\n10\n');
  });
});

test('setup gives a restored kernel this run\'s environment; two commands may come at once', TIMEOUT, async () => {
  const nb = notebook([
    "console.log('one', process.env.TONIC_A);",
    "console.log('two', process.env.TONIC_A, process.env.TONIC_B, process.cwd() === require('os').tmpdir());",
  ]);
  await withKernel(nb, { snapshots: true, spawnEnv: { TONIC_A: 'a', TONIC_B: 'b' } }, async (k) => {
    await k.expect('hello');
    const first = await k.expect('pause');
    assert.ok(first.seen.env.includes('TONIC_A') && !first.seen.env.includes('TONIC_B'));
    const env = { ...process.env, TONIC_A: 'changed' };
    delete env.NODE_TEST_CONTEXT;
    const setup = { op: 'setup', env, cwd: require('os').tmpdir(), inspect: false };
    const second = k.expect('pause');
    // both lines in one write: the kernel reads them in one read
    require('node:fs').writeSync(k.cmdFd, `${JSON.stringify(setup)}\n{"op":"go"}\n`);
    const seen = (await second).seen;
    assert.ok(seen.env.includes('TONIC_A') && seen.env.includes('TONIC_B'));
    assert.equal(seen.cwd, true);
    k.go();
    await k.exited;
    assert.equal(k.stdout, 'one a\ntwo changed undefined true\n');
  });
});
