// A pause blocks the whole process in read(2) on the command pipe: no timer, immediate
// or microtask of the cells before it runs until tonic answers.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { test } = require('node:test');

const { notebook, sleep, withKernel } = require('./harness');

const TIMEOUT = { timeout: 10000 };

// x86_64's and arm64's numbers of read(2), as /proc/PID/syscall shows them.
const READ = { x64: 0, arm64: 63 }[process.arch];

// What the process's main thread is blocked in: [syscall number, first argument], or
// null where /proc/PID/syscall cannot be read (it needs root, or ptrace rights).
function blockedIn(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/syscall`, 'utf8');
  } catch (err) {
    return null;
  }
  const [nr, arg0] = text.trim().split(' ');
  return [Number(nr), Number(arg0)];
}

test('nothing runs while the kernel is paused; everything does after go', TIMEOUT, async () => {
  const nb = notebook([
    "setTimeout(() => console.log('timer'), 0);\n" +
      "setImmediate(() => console.log('immediate'));\n" +
      "Promise.resolve().then(() => console.log('microtask'));\n" +
      "process.nextTick(() => console.log('tick'));\n" +
      "console.log('cell 1');",
    "console.log('cell 2');",
  ]);
  await withKernel(nb, {}, async (k) => {
    await k.expect('hello');
    assert.equal((await k.expect('pause')).cell, 1);
    await sleep(300);
    assert.equal(k.stdout, 'cell 1\n');
    k.go();
    assert.equal((await k.expect('pause')).cell, 2);
    await sleep(300);
    assert.equal(k.stdout, 'cell 1\ncell 2\n', 'the module body has not finished yet');
    k.go();
    assert.deepEqual(await k.exited, { code: 0, signal: null });
    assert.equal(k.stdout, 'cell 1\ncell 2\ntick\nmicrotask\ntimer\nimmediate\n');
  });
});

test('a paused kernel sits in read(2) on the command pipe', TIMEOUT, async (t) => {
  const nb = notebook(["console.log('one');", "console.log('two');"]);
  await withKernel(nb, {}, async (k) => {
    await k.expect('hello');
    await k.expect('pause');
    await sleep(50);
    const blocked = blockedIn(k.pid);
    if (blocked === null || READ === undefined) {
      t.skip('/proc/PID/syscall is not readable here');
      k.go();
      return;
    }
    const [nr, fd] = blocked;
    assert.equal(nr, READ, `blocked in syscall ${nr}, not read`);
    // The kernel reopened its fd 3 (close-on-exec) and reads the command FIFO there.
    assert.equal(fs.readlinkSync(`/proc/${k.pid}/fd/${fd}`), k.cmdPath);
    assert.notEqual(fd, 3);
    const state = fs.readFileSync(`/proc/${k.pid}/stat`, 'utf8').split(') ')[1][0];
    assert.equal(state, 'S', 'asleep, not spinning');
    k.go();
    await k.expect('pause');
    k.go();
    assert.equal((await k.exited).code, 0);
  });
});
