// tonic's node-side kernel, preloaded with `node -r kernel.js FILE`.
//
// It lets node's own module loader compile and run FILE, but hands it the instrumented
// source (pause sites between cells; see tonic/notebook/instrument.py). At each pause
// site it reports to tonic and blocks in read(2) on a pipe until tonic answers, so
// nothing else (no microtask, no timer) runs between cells, and the process can be
// checkpointed there.
//
// It hides itself: its environment variable, its `-r` flag in process.execArgv and its
// require.cache entry are removed before the notebook runs.
'use strict';

(function tonicKernel() {
  // The messages between tonic and the kernel, one JSON object a line (the other side:
  // tonic/kernel/protocol.py). Events go to tonic on fd 4; commands, one answering each
  // pause, come from tonic on fd 3: {op: 'go'}, or {op: 'eval', source, values?, check?}
  // to continue with an edited rest of the notebook (see tonic/timetravel/continuation/).
  const events = {
    hello: (pid, kind) => ({ ev: 'hello', pid, kind }),
    // After cell `cell`: its time, the files its require() loaded (snapshot runs) and its
    // completion value (when inspected), each left out when undefined.
    pause(cell, ms, modules, value) {
      const msg = { ev: 'pause', cell, ms };
      if (modules !== undefined) msg.modules = modules;
      if (value !== undefined) msg.value = value;
      return msg;
    },
    // An uncaught error after pause `after` (origin 'early': the edited file of a
    // continued run does not compile).
    error: (after, origin, error, ms) => ({ ev: 'error', after, origin, error, ms }),
    exit: (code) => ({ ev: 'exit', code }),
  };
  const commands = {
    isEval: (cmd) => cmd.op === 'eval',
  };

  const fs = require('fs');
  const util = require('util');
  const url = require('url');
  const vm = require('vm');
  const WRAPPER_PARAMS = ['exports', 'require', 'module', '__filename', '__dirname'];

  const planPath = process.env.TONIC_KERNEL_PLAN;
  delete process.env.TONIC_KERNEL_PLAN;
  if (!planPath) return;

  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    if ((argv[i] === '-r' || argv[i] === '--require') && argv[i + 1] === __filename) {
      argv.splice(i, 2);
      break;
    }
  }
  delete require.cache[__filename];

  const plan = JSON.parse(fs.readFileSync(planPath, 'utf8'));
  // tonic hands us our two channels as pipes on fds 3 (commands) and 4 (events). We
  // reopen them close-on-exec and close the originals, so that the notebook's child
  // processes do not inherit them. As pipes they survive checkpoint and restore.
  // (Under the clock shim, they already are close-on-exec, and the shim needs the
  // command pipe on fd 3 to tell a pause from other reads.)
  let cmdFd = 3;
  let evFd = 4;
  if (!plan.shim) {
    cmdFd = fs.openSync('/proc/self/fd/3', 'r');
    evFd = fs.openSync('/proc/self/fd/4', 'w');
    fs.closeSync(3);
    fs.closeSync(4);
  }
  for (const [name, value] of Object.entries(plan.env || {})) {
    if (value === null) delete process.env[name];
    else process.env[name] = value;
  }
  const valueCells = new Set(plan.values);
  const NONE = Symbol('none');
  const INSPECT = {
    depth: 2, colors: false, customInspect: false, getters: false,
    maxArrayLength: 100, maxStringLength: 10000, breakLength: 100,
  };

  function die() {
    // tonic went away: nobody can resume us, and nobody reads our output.
    process.kill(process.pid, 'SIGKILL');
  }

  function send(msg) {
    const data = Buffer.from(JSON.stringify(msg) + '\n');
    let off = 0;
    try {
      while (off < data.length) off += fs.writeSync(evFd, data, off, data.length - off);
    } catch (err) {
      die();
    }
  }

  const cmdBuf = Buffer.alloc(65536);
  function receive() {
    let line = '';
    for (;;) {
      let n;
      try {
        n = fs.readSync(cmdFd, cmdBuf, 0, cmdBuf.length, null);
      } catch (err) {
        if (err.code === 'EAGAIN' || err.code === 'EINTR') continue;
        die();
      }
      if (n === 0) die();
      line += cmdBuf.toString('utf8', 0, n);
      if (line.endsWith('\n')) return JSON.parse(line);
    }
  }

  function show(value) {
    try {
      return util.inspect(value, INSPECT);
    } catch (err) {
      return '<value could not be inspected>';
    }
  }

  function describe(err) {
    if (!plan.inspect) return null;
    try {
      if (util.types.isNativeError(err)) return String(err.stack);
    } catch (e) {
      // fall through to inspect
    }
    return show(err);
  }

  // Files the notebook's require() loaded since the last pause (snapshot keys cover them).
  const Module = require('module');
  const seen = new Set(Object.keys(Module._cache));
  seen.add(plan.file);
  function newModules() {
    const fresh = [];
    for (const name of Object.keys(Module._cache)) {
      if (!seen.has(name)) {
        seen.add(name);
        fresh.push(name);
      }
    }
    return fresh;
  }

  const now = () => Number(process.hrtime.bigint()) / 1e6;
  let mark = now();
  let lastCell = 0;
  let continuation = null;

  const tonic = {
    v: NONE,
    // Pause site after cell k: report, then block until tonic says how to go on.
    p(k) {
      const ms = now() - mark;
      const modules = plan.snapshots ? newModules() : undefined;
      const inspected = plan.inspect && valueCells.has(k) && tonic.v !== NONE;
      const value = inspected ? show(tonic.v) : undefined;
      tonic.v = NONE;
      lastCell = k;
      send(events.pause(k, ms, modules, value));
      const cmd = receive();
      mark = now();
      if (!commands.isEval(cmd)) return false;
      if (typeof cmd.check === 'string') {
        // The edited file's early errors (node reports them before running anything):
        // compiled as node's CommonJS loader compiles a module, then thrown away.
        try {
          vm.compileFunction(cmd.check, WRAPPER_PARAMS, { filename: plan.file });
        } catch (err) {
          send(events.error(k, 'early', describe(err), 0));
          process.kill(process.pid, 'SIGKILL');
        }
      }
      continuation = cmd.source;
      if (Array.isArray(cmd.values)) {
        valueCells.clear();
        for (const v of cmd.values) valueCells.add(v);
      }
      return true;
    },
    // The edited rest of the notebook a resumed run continues with (see tonic/timetravel/continuation/).
    t() {
      const source = continuation;
      continuation = null;
      return source;
    },
  };
  Object.defineProperty(globalThis, '__tonic__', { value: tonic, enumerable: false });

  process.on('uncaughtExceptionMonitor', (err, origin) => {
    send(events.error(lastCell, origin, describe(err), now() - mark));
  });

  if (plan.snapshots) {
    // Under a snapshot engine node runs below a shell in its own PID namespace, whose
    // status cannot tell exit(137) from SIGKILL: say how we exited.
    process.on('exit', (code) => send(events.exit(code)));
  }

  const file = plan.file;
  if (plan.kind === 'esm') {
    // node's ES module loader reads a file: URL with fs.promises.readFile, looked up at
    // call time. The real read still happens, so the load takes the same event-loop
    // turns as in plain node (and error stacks show the same frames).
    const promises = fs.promises;
    const readFile = promises.readFile;
    const mainUrl = url.pathToFileURL(file).href;
    promises.readFile = async function (p, ...rest) {
      const read = readFile.call(this, p, ...rest);
      if (!(p instanceof URL && p.href === mainUrl)) return read;
      promises.readFile = readFile;
      await read;
      mark = now();
      return Buffer.from(plan.source, 'utf8');
    };
  } else {
    const readFileSync = fs.readFileSync;
    fs.readFileSync = function (p, ...rest) {
      if (p === file) {
        fs.readFileSync = readFileSync;
        mark = now();
        return plan.source;
      }
      return readFileSync.call(this, p, ...rest);
    };
  }
  send(events.hello(process.pid, plan.kind));
})();
