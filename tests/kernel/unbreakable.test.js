// What a notebook does to its builtins and its process does not break the kernel, and its
// hooks keep out of sight.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');

const { notebook, suffixSite, withKernel } = require('./harness');

const TIMEOUT = { timeout: 10000 };

// Every builtin a kernel could use after the notebook started, replaced or removed.
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

const DAMAGE = `const fs = require('fs');
const { writeSync } = fs;
const boom = (what) => () => { throw new Error('no ' + what); };
Object.keys = () => 0; Object.entries = () => 0; Object.hasOwn = () => true;
Object.defineProperty = boom('defineProperty');
Object.prototype.get = function () { return 1; };
Object.prototype.set = function () {};
Object.prototype.check = '1 +'; Object.prototype.values = [9]; Object.prototype.op = 'eval';
Object.prototype.toJSON = () => 'garbage'; Array.prototype.toJSON = () => 'garbage';
Set.prototype.has = boom('has'); Set.prototype.add = boom('add'); Map.prototype.get = boom('get');
JSON.stringify = () => 'garbage'; JSON.parse = () => ({ op: 'garbage' });
Buffer.from = boom('from'); Buffer.alloc = boom('alloc');
Buffer.prototype.utf8Slice = () => ''; Buffer.prototype.toString = () => '';
fs.readSync = boom('readSync'); fs.writeSync = boom('writeSync'); fs.openSync = boom('openSync');
for (const m of ['indexOf', 'lastIndexOf', 'slice', 'split', 'startsWith', 'endsWith', 'replace']) {
  String.prototype[m] = boom(m);
}
// (not push: node's own util.inspect calls it, in plain node too)
for (const m of ['map', 'join', 'findIndex', 'splice', 'slice', 'sort', 'filter']) {
  Array.prototype[m] = boom(m);
}
Array.isArray = () => false;
RegExp.prototype.exec = () => null; RegExp.prototype.test = () => false;
Reflect.apply = boom('apply'); Reflect.ownKeys = () => []; Reflect.defineProperty = () => false;
Reflect.getOwnPropertyDescriptor = () => undefined;
Function.prototype.call = boom('call'); Function.prototype.apply = boom('apply');
Function.prototype.bind = boom('bind');
Math.max = () => NaN; Number = () => 0; String = () => ''; Symbol = () => 0;
Proxy = boom('Proxy'); Promise = boom('Promise');
Error.captureStackTrace = boom('captureStackTrace');
process.kill = boom('kill'); process.hrtime.bigint = () => 0; process.hrtime = () => [0, 0];
process.on = boom('on'); process.binding = boom('binding');
require('util').inspect = boom('inspect');
require('vm').compileFunction = boom('compileFunction');
require('events').prototype.on = boom('on');
delete Array.prototype[Symbol.iterator];
const proc = process;
globalThis.process = undefined;
globalThis.Buffer = undefined;
writeSync(1, 'damaged\\n');`;

test('a notebook that broke its builtins still pauses, reports and continues', TIMEOUT, async () => {
  const cells = [
    DAMAGE,
    "writeSync(1, 'two ' + proc.env.TONIC_SEEN + '\\n');\nrequire('./helper.js');",
    "require('fs').writeFileSync('out.txt', 'x');\nwriteSync(1, 'three\\n');",
  ];
  const nb = notebook(cells);
  // cell 2's value, recorded
  nb.source = nb.source.replace("require('./helper.js');", ";__tonic__.v=\nrequire('./helper.js');");
  const options = {
    values: [2],
    inspect: true,
    snapshots: true,
    spawnEnv: { TONIC_SEEN: 'yes' },
    files: { 'helper.js': 'module.exports = { n: 42 };\n' },
  };
  await withKernel(nb, options, async (k) => {
    await k.expect('hello');
    assert.equal((await k.expect('pause')).cell, 1);
    k.go();
    const second = await k.expect('pause');
    assert.deepEqual(Object.keys(second), ['ev', 'cell', 'ms', 'modules', 'value', 'seen', 'mime']);
    assert.equal(second.cell, 2);
    assert.equal(second.value, '{ n: 42 }');
    // its shape as a tree for the pages, built with the kernel's own builtins
    const tree = JSON.parse(second.mime['application/vnd.tonic.tree+json']);
    assert.deepEqual(tree, ['{ n: 42 }', [['n', ['42']]]]);
    assert.equal(typeof second.ms, 'number');
    assert.deepEqual(second.modules, [path.join(k.dir, 'helper.js')]);
    assert.ok(second.seen.env.includes('TONIC_SEEN'), second.seen.env);
    assert.ok(second.seen.probes.includes(path.join(k.dir, 'helper.js')), second.seen.probes);
    // a restored kernel's setup, then an edited rest of the notebook that throws
    const env = { ...process.env, TONIC_SEEN: 'again' };
    delete env.NODE_TEST_CONTEXT;
    k.send({ op: 'setup', env, cwd: k.dir, inspect: true });
    const suffix =
      '__tonic_suffix_2__:{\n' +
      "writeSync(1, 'edited ' + proc.env.TONIC_SEEN + '\\n');\n" +
      "(function fail() { throw new TypeError('after the damage'); })();\n" +
      `${suffixSite(3, 2)}\n}\n//# sourceURL=${k.file}`;
    k.send({ op: 'eval', source: suffix, values: [], check: 'let ok = 1;\n' });
    await k.expect('continuing'); // the check passed
    const error = await k.expect('error');
    assert.equal(error.after, 2);
    assert.equal(error.origin, 'uncaughtException');
    assert.match(error.error, /^TypeError: after the damage\n {4}at fail \(/);
    assert.doesNotMatch(error.error, /eval/, 'the eval frames are mended');
    assert.deepEqual(await k.exited, { code: 1, signal: null });
    assert.equal(k.stdout, 'damaged\ntwo yes\nedited again\n');
    assert.match(k.stderr, /TypeError: after the damage/);
  });
});

test('a file about to change is still saved after the damage', TIMEOUT, async () => {
  const nb = notebook([DAMAGE, "require('fs').writeFileSync('out.txt', 'x');"]);
  await withKernel(nb, { snapshots: true }, async (k) => {
    await k.expect('hello');
    await k.expect('pause');
    k.go();
    assert.deepEqual(await k.expect('save'), { ev: 'save', path: path.join(k.dir, 'out.txt') });
    k.send({ op: 'saved' });
    assert.equal((await k.expect('pause')).cell, 2);
    k.go();
    assert.deepEqual(await k.exited, { code: 0, signal: null });
  });
});

test('a notebook that closes the kernel\'s channels runs on, unpaused', TIMEOUT, async () => {
  // It finds them by their names (the harness's FIFOs) and closes them.
  const close =
    "const fs = require('fs');\n" +
    "for (const fd of fs.readdirSync('/proc/self/fd')) {\n" +
    "  let link = '';\n" +
    "  try { link = fs.readlinkSync('/proc/self/fd/' + fd); } catch (err) {}\n" +
    "  if (link.endsWith('/cmd') || link.endsWith('/events')) fs.closeSync(Number(fd));\n" +
    '}\n' +
    "console.log('closed');";
  const nb = notebook([close, "console.log('two');", "setTimeout(() => console.log('three'), 1);"]);
  await withKernel(nb, { snapshots: true }, async (k) => {
    await k.expect('hello');
    assert.equal(await k.next(), null, 'no event once the channel is closed');
    assert.deepEqual(await k.exited, { code: 0, signal: null });
    assert.equal(k.stdout, 'closed\ntwo\nthree\n');
    assert.equal(k.stderr, '');
  });
});

test('the hooks keep out of sight', TIMEOUT, async () => {
  const probe = `const util = require('util');
const seen = {
  global: '__tonic__' in globalThis,
  cwdName: process.cwd.name,
  chdirName: process.chdir.name,
  cwdSource: process.cwd.toString().includes('wrappedCwd'),
  cwdData: 'value' in Object.getOwnPropertyDescriptor(process, 'cwd'),
  namespaced: require('path').toNamespacedPath.name,
  open: process.binding('fs').open.toString(),
  openName: process.binding('fs').open.name,
};
try { process.chdir('/no/such/folder'); } catch (err) { seen.frame = err.stack.split('\\n')[1]; }
util.inspect(process.env);
console.log(JSON.stringify(seen));`;
  const nb = notebook([probe, "console.log('two');"]);
  await withKernel(nb, { snapshots: true }, async (k) => {
    await k.expect('hello');
    const pause = await k.expect('pause');
    assert.equal(pause.seen.cwd, true, 'process.cwd() was used');
    assert.equal(pause.seen.all, true, 'util.inspect listed process.env');
    k.go();
    await k.expect('pause');
    k.go();
    assert.equal((await k.exited).code, 0, k.stderr);
    const seen = JSON.parse(k.stdout.split('\n')[0]);
    assert.deepEqual(seen, {
      global: false,
      cwdName: 'wrappedCwd',
      chdirName: 'wrappedChdir',
      cwdSource: true,
      cwdData: true,
      namespaced: 'toNamespacedPath',
      // node >= 22 no longer passes fs's paths through toNamespacedPath: the binding
      // functions that take paths are the kernel's own there (process.binding is
      // deprecated: DEP0111).
      open: NODE_MAJOR >= 22 ? seen.open : 'function open() { [native code] }',
      openName: 'open',
      frame: seen.frame,
    });
    assert.match(seen.frame, /^ {4}at process\.wrappedChdir \[as chdir\] \(node:/);
  });
});
