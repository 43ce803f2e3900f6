// Starts `node -r tonic/kernel/kernel.js FILE` the way tonic's driver does, for the
// kernel's own tests: a plan file (TONIC_KERNEL_PLAN), commands on its fd 3 and events
// on its fd 4, one JSON object a line.
//
// The channels are FIFOs, not child_process 'pipe's: those are socket pairs, which the
// kernel cannot reopen through /proc/self/fd (ENXIO), and a FIFO blocks a read(2) just
// as tonic's pipes do.
'use strict';

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const KERNEL = path.resolve(__dirname, '..', '..', 'tonic', 'kernel', 'kernel.js');

// Pause sites as tonic/notebook/instrument.py writes them after cell k: a CommonJS one
// can continue with an edited suffix (see tonic/timetravel/continuation/).
const site = (k) => `;if(__tonic__.p(${k})){(()=>eval(__tonic__.t()))();return}`;
const esmSite = (k) => `;__tonic__.p(${k});`;
// What a resumed run's pause k evaluates instead of the rest of the file: pause sites
// leave the labelled block around it (continuation.suffix_source).
const suffixSite = (k, after) =>
  `;if(__tonic__.p(${k})){(()=>eval(__tonic__.t()))();break __tonic_suffix_${after}__}`;

// A notebook of cells separated by blank lines, and its source as instrument() makes it
// without value captures: each blank line between two cells holds the pause site of the
// one before, and the last one's goes on a line of its own after the file.
function notebook(cells, { esm = false } = {}) {
  const at = esm ? esmSite : site;
  const original = cells.join('\n\n') + '\n';
  const head = cells.slice(0, -1).map((cell, i) => `${cell}\n${at(i + 1)}\n`);
  const source = `${head.join('')}${cells[cells.length - 1]}\n\n${at(cells.length)}\n`;
  return { original, source };
}

// Complete lines of a stream, as parsed JSON, one at a time.
class Lines {
  constructor(stream) {
    this.buffer = '';
    this.queue = [];
    this.waiting = [];
    this.ended = false;
    stream.setEncoding('utf8');
    stream.on('data', (text) => {
      this.buffer += text;
      let nl;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.queue.push(JSON.parse(line));
      }
      this.wake();
    });
    stream.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  wake() {
    while (this.waiting.length && (this.queue.length || this.ended)) {
      this.waiting.shift()(this.queue.length ? this.queue.shift() : null);
    }
  }

  // The next message; null once the stream has ended.
  next(ms = 5000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== take);
        reject(new Error(`no message within ${ms} ms`));
      }, ms);
      const take = (msg) => {
        clearTimeout(timer);
        resolve(msg);
      };
      this.waiting.push(take);
      this.wake();
    });
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Kernel {
  // `nb`: {original, source} (see notebook()); `kind`: 'cjs' or 'esm'; `values`: cells
  // whose completion values the kernel records (with `inspect`); `env`: the plan's
  // variables to restore (null: remove) before the notebook runs; `spawnEnv`: set for
  // node; `files`: more files beside the notebook.
  constructor(nb, options = {}) {
    const {
      kind = 'cjs',
      name = kind === 'esm' ? 'nb.mjs' : 'nb.js',
      values = [],
      inspect = false,
      snapshots = false,
      env = {},
      spawnEnv = {},
      files = {},
    } = options;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tonic-kernel-test-'));
    this.file = path.join(this.dir, name);
    fs.writeFileSync(this.file, nb.original);
    for (const [rel, text] of Object.entries(files)) {
      fs.writeFileSync(path.join(this.dir, rel), text);
    }
    this.snapshots = snapshots;
    const plan = {
      file: this.file,
      kind,
      source: nb.source,
      values,
      sites: true,
      inspect,
      env,
      snapshots,
      shim: false,
    };
    const planPath = path.join(this.dir, 'plan.json');
    fs.writeFileSync(planPath, JSON.stringify(plan));

    this.cmdPath = path.join(this.dir, 'cmd');
    this.evPath = path.join(this.dir, 'events');
    execFileSync('mkfifo', ['-m', '600', this.cmdPath, this.evPath]);
    // Opened read-write, the command FIFO opens without waiting for the kernel; tonic
    // writes on it, and the kernel reads what tonic writes.
    this.cmdFd = fs.openSync(this.cmdPath, 'r+');
    // The events: our end reads; the kernel's writes, held until it exits (then ours
    // sees the end of the stream after its last event).
    const evRead = fs.openSync(this.evPath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const evWrite = fs.openSync(this.evPath, 'w');

    const childEnv = { ...process.env, ...spawnEnv, TONIC_KERNEL_PLAN: planPath };
    delete childEnv.NODE_TEST_CONTEXT; // the test runner's, for its own child processes
    delete childEnv.NODE_OPTIONS;
    this.child = spawn(process.execPath, ['-r', KERNEL, this.file], {
      cwd: this.dir,
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe', this.cmdFd, evWrite],
    });
    fs.closeSync(evWrite);
    this.pid = this.child.pid;
    this.stdout = '';
    this.stderr = '';
    this.child.stdout.setEncoding('utf8').on('data', (s) => (this.stdout += s));
    this.child.stderr.setEncoding('utf8').on('data', (s) => (this.stderr += s));
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => resolve({ code, signal }));
    });
    this.events = new Lines(new net.Socket({ fd: evRead, readable: true, writable: false }));
  }

  next(ms) {
    return this.events.next(ms);
  }

  // The next event, which must be of kind `ev`.
  async expect(ev, ms) {
    const msg = await this.next(ms);
    if (msg === null || msg.ev !== ev) {
      throw new Error(`expected a ${ev} event, got ${JSON.stringify(msg)}; stderr: ${this.stderr}`);
    }
    // In snapshot runs, the kernel waits after hello until tonic has taken in node's
    // start-up.
    if (ev === 'hello' && this.snapshots) this.go();
    return msg;
  }

  send(command) {
    fs.writeSync(this.cmdFd, JSON.stringify(command) + '\n');
  }

  go() {
    this.send({ op: 'go' });
  }

  // Output travels on other pipes than events: wait until stdout holds `text`.
  async stdoutIs(text, ms = 2000) {
    const until = Date.now() + ms;
    while (this.stdout !== text && Date.now() < until) await sleep(5);
    return this.stdout;
  }

  async close() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
    fs.closeSync(this.cmdFd);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// Run `body(kernel)` on a started kernel, and always end it.
async function withKernel(nb, options, body) {
  const kernel = new Kernel(nb, options);
  try {
    return await body(kernel);
  } finally {
    await kernel.close();
  }
}

module.exports = { KERNEL, Kernel, notebook, site, esmSite, sleep, suffixSite, withKernel };
