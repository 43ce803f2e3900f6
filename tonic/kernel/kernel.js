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
    // After cell `cell`: its time, the files its require() loaded and what it used of
    // its surroundings (snapshot runs: `seen`), and its completion value (when
    // inspected), each left out when undefined.
    pause(cell, ms, modules, value, seen) {
      const msg = { ev: 'pause', cell, ms };
      if (modules !== undefined) msg.modules = modules;
      if (value !== undefined) msg.value = value;
      if (seen !== undefined) msg.seen = seen;
      return msg;
    },
    // An uncaught error after pause `after` (origin 'early': the edited file of a
    // continued run does not compile; 'unfit': a name its edited cells read is missing,
    // `error` names it).
    error: (after, origin, error, ms) => ({ ev: 'error', after, origin, error, ms }),
    // The main thread is about to change (or open) `path` for the first time in this
    // process: tonic keeps what is there first, and answers {op: 'saved'}.
    save: (path) => ({ ev: 'save', path }),
    exit: (code) => ({ ev: 'exit', code }),
  };
  const commands = {
    isEval: (cmd) => cmd.op === 'eval',
    // Sent to a restored kernel before the command answering its pause: the run's
    // environment, working directory and whether it inspects values.
    isSetup: (cmd) => cmd.op === 'setup',
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
  let inspecting = plan.inspect;
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
  let leftover = ''; // what arrived after the last line (tonic may send two at once)
  function receive() {
    let line = leftover;
    for (;;) {
      const end = line.indexOf('\n');
      if (end !== -1) {
        leftover = line.slice(end + 1);
        return JSON.parse(line.slice(0, end));
      }
      let n;
      try {
        n = fs.readSync(cmdFd, cmdBuf, 0, cmdBuf.length, null);
      } catch (err) {
        if (err.code === 'EAGAIN' || err.code === 'EINTR') continue;
        die();
      }
      if (n === 0) die();
      line += cmdBuf.toString('utf8', 0, n);
    }
  }

  function show(value) {
    try {
      // Not a promise's reason: inspecting it formats an error's stack, and node then
      // reports that unhandled rejection at its own line instead of the error's.
      if (util.types.isPromise(value)) return util.inspect(value, { depth: -1 });
      return util.inspect(value, INSPECT);
    } catch (err) {
      return '<value could not be inspected>';
    }
  }

  function describe(err) {
    if (!inspecting) return null;
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

  // What the cells use of their surroundings, for the keys of their snapshots (see
  // tonic/timetravel/deps.py): the environment variables they read (all of them when
  // they list process.env, start a child process that inherits it, or a worker), whether
  // the working directory mattered (process.cwd(), process.chdir(), a relative path
  // given to fs, a child or worker started there), and the paths fs looked at without
  // necessarily opening them (stat, access, existsSync, require's lookups, failed
  // opens). Files opened, written and removed, by every process of the notebook, are
  // observed outside node (tonic/observe/).
  function watch() {
    const path = require('path');
    const names = new Set();
    const probes = new Set();
    let all = false;
    let cwdUsed = false;
    const realEnv = process.env;
    const note = (name) => {
      if (typeof name === 'string') names.add(name);
    };
    process.env = new Proxy(realEnv, {
      get(target, name) { note(name); return target[name]; },
      has(target, name) { note(name); return name in target; },
      getOwnPropertyDescriptor(target, name) {
        note(name);
        return Reflect.getOwnPropertyDescriptor(target, name);
      },
      ownKeys(target) { all = true; return Reflect.ownKeys(target); },
      set(target, name, value) { target[name] = value; return true; },
      deleteProperty(target, name) { return delete target[name]; },
      defineProperty(target, name, desc) { return Reflect.defineProperty(target, name, desc); },
    });
    const cwd = process.cwd;
    const chdir = process.chdir;
    process.cwd = { cwd() { cwdUsed = true; return cwd.call(process); } }.cwd;
    process.chdir = { chdir(dir) { cwdUsed = true; return chdir.call(process, dir); } }.chdir;
    let worker = false;
    process.on('worker', () => { all = true; cwdUsed = true; worker = true; });

    // Every fs call and require() lookup passes its path through path.toNamespacedPath
    // (looked up at call time, a no-op on POSIX) before the system call: seen there, with
    // no frame of ours on the stack of an error the call throws.
    //
    // Before the main thread first changes a path (open, write, rename, unlink, copy),
    // tonic keeps what is there, so that it can put it back. fs reads each call's
    // binding function (a getter of ours: no frame on the call's stack) and validates
    // its paths, before or after that (`recent`, `pending`).
    const saved = new Set();
    let recent = [];
    let pending = null;
    let saving = false; // the kernel's own fs calls, while it asks tonic to save
    function save(p) {
      if (saved.has(p)) return;
      saved.add(p);
      saving = true;
      try {
        send(events.save(p));
        receive();
      } finally {
        saving = false;
      }
    }
    const toNamespacedPath = path.toNamespacedPath;
    path.toNamespacedPath = { toNamespacedPath(p) {
      if (typeof p === 'string') {
        if (!p.startsWith('/')) cwdUsed = true;
        const abs = path.resolve(cwd.call(process), p);
        probes.add(abs);
        recent.push(abs);
        if (recent.length > 4) recent.shift();
        if (pending !== null) {
          if (pending.seen++ >= pending.from) save(abs);
          if (pending.seen >= pending.paths) pending = null;
        }
      }
      return toNamespacedPath(p);
    } }.toNamespacedPath;
    // name -> [how many paths the call takes, the first of them it changes]
    const CHANGES = {
      open: [1, 0], openFileHandle: [1, 0], writeFileUtf8: [1, 0], unlink: [1, 0],
      rename: [2, 0], copyFile: [2, 1],
    };
    function calling(name) {
      if (saving) return;
      const paths = recent;
      recent = [];
      pending = null;
      const change = CHANGES[name];
      if (change === undefined) return;
      if (paths.length === 0) {
        pending = { paths: change[0], from: change[1], seen: 0 };
        return;
      }
      const own = paths.slice(-change[0]);
      for (let i = change[1]; i < own.length; i++) save(own[i]);
    }
    const flags = `${process.execArgv.join(' ')} ${realEnv.NODE_OPTIONS || ''}`;
    // process.binding() would warn: the children's working directory cannot be seen, nor
    // files kept before the main thread changes them.
    const blind = /--(pending|throw|trace)-deprecation/.test(flags);
    if (!blind) {
      const fsb = process.binding('fs');
      for (const name of Object.keys(fsb)) {
        const value = fsb[name];
        if (typeof value !== 'function') continue;
        Object.defineProperty(fsb, name, {
          get() { calling(name); return value; },
          configurable: true,
          enumerable: true,
        });
      }
      const spawned = (options) => {
        all = true; // a child inherits the environment (its envPairs were listed)
        if (!options || typeof options.cwd !== 'string' || !options.cwd.startsWith('/')) {
          cwdUsed = true;
        }
      };
      const sync = process.binding('spawn_sync');
      const spawnSync = sync.spawn;
      sync.spawn = function (options) { spawned(options); return spawnSync.call(this, options); };
      const proto = process.binding('process_wrap').Process.prototype;
      const spawn = proto.spawn;
      proto.spawn = function (options) { spawned(options); return spawn.call(this, options); };
    }
    return {
      env: realEnv,
      saved,
      cwd: () => cwd.call(process),
      chdir: (dir) => chdir.call(process, dir),
      // What the cell since the last pause used; then start afresh.
      take() {
        const used = {
          env: [...names].sort(), all, cwd: cwdUsed || blind, probes: [...probes].sort(),
          worker,
        };
        worker = false;
        names.clear();
        probes.clear();
        all = false;
        cwdUsed = false;
        return used;
      },
    };
  }

  const now = () => Number(process.hrtime.bigint()) / 1e6;
  let mark = now();
  let lastCell = 0;
  let continuation = null;
  // In a continued run, V8 names the frames of the edited cells' code by the eval that
  // runs it: their top level reads `eval (FILE:L:C)`, above the pause sites that
  // evaluated it (an arrow function, then the module's own frame or, when the snapshot
  // was itself continued, the previous eval's), and an anonymous function made there
  // is `eval` too. `sites` holds, for each continuation, where the pause site called
  // its arrow: with it, the stacks of errors (and console.trace) get node's frames for
  // the edited file: `Object.<anonymous> (FILE:L:C)` above node's loader, anonymous
  // functions without a name.
  const sites = [];
  const NativeError = Error;
  const captureStackTrace = Error.captureStackTrace;
  const nodeFormat = Error.prepareStackTrace; // node's own (node 20.13+), else undefined
  const asTrace = (error, trace) => trace;
  // Where a frame is: `F:L:C` from `    at NAME (F:L:C)`, `    at F:L:C` or a call site.
  const where = (frame) => {
    const open = frame.lastIndexOf(' (');
    if (frame.endsWith(')') && open !== -1) return frame.slice(open + 2, -1);
    return frame.startsWith('    at ') ? frame.slice(7) : frame;
  };
  const lineOf = (frame) => where(frame).split(':').slice(-2)[0];
  function callerSite() {
    const holder = {};
    const saved = NativeError.prepareStackTrace;
    NativeError.prepareStackTrace = asTrace;
    try {
      captureStackTrace(holder, tonic.t);
      const trace = holder.stack;
      if (Array.isArray(trace) && trace.length > 1) sites.push([String(trace[0]), String(trace[1])]);
    } catch (err) {
      // no frames to mend
    } finally {
      NativeError.prepareStackTrace = saved;
    }
  }
  const escaped = plan.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // `    at [async ][new ][RECEIVER.]eval[ [as NAME]] (FILE:L:C)`
  const evalFrame = new RegExp(
    `^(    at (?:async )?(new )?)(?:(\\S+)\\.)?eval(?: \\[as (\\S+)\\])? \\((${escaped}:\\d+:\\d+)\\)$`,
  );
  // node's frames below the module's own (its loader), for the frames a continued run's
  // pause sites pushed out of Error.stackTraceLimit.
  let loader = null;
  function loaderFrames() {
    const holder = {};
    const saved = NativeError.prepareStackTrace;
    const limit = NativeError.stackTraceLimit;
    NativeError.prepareStackTrace = asTrace;
    NativeError.stackTraceLimit = Infinity;
    try {
      captureStackTrace(holder, tonic.p);
      const trace = holder.stack;
      if (Array.isArray(trace)) loader = trace.slice(1).map((frame) => `    at ${frame}`);
    } catch (err) {
      // none
    } finally {
      NativeError.stackTraceLimit = limit;
      NativeError.prepareStackTrace = saved;
    }
  }
  function mended(stack) {
    if (typeof stack !== 'string' || sites.length === 0) return stack;
    const lines = stack.split('\n');
    // The top level of the newest eval on the stack: an eval frame above a pause site's
    // arrow, above the previous eval's top level (or the module's frame), and so on.
    let top = -1;
    let level = -1;
    for (let i = 0; i + 1 < lines.length && top === -1; i++) {
      if (!evalFrame.test(lines[i])) continue;
      level = sites.findIndex(([arrow]) => lineOf(lines[i + 1]) === lineOf(arrow));
      if (level !== -1) top = i;
    }
    let end = top;
    for (; top !== -1 && level >= 0; level--) {
      if (end + 1 >= lines.length) break; // the limit cut the stack: the rest is known
      if (lineOf(lines[end + 1]) !== lineOf(sites[level][0])) return stack;
      if (end + 2 >= lines.length) break;
      if (where(lines[end + 2]) !== where(sites[level][1])) return stack;
      end += 2;
    }
    if (top !== -1 && loader !== null) {
      const above = lines.slice(0, top).filter((line) => line.startsWith('    at ')).length;
      const limit = NativeError.stackTraceLimit;
      const frames = [`    at Object.<anonymous> (${where(lines[top])})`, ...loader];
      const room = typeof limit === 'number' ? Math.max(0, limit - above) : frames.length;
      lines.splice(top, lines.length - top, ...frames.slice(0, room));
    }
    for (let i = 0; i < lines.length; i++) {
      const m = evalFrame.exec(lines[i]);
      if (m === null) continue;
      const [, head, isNew, receiver, as, place] = m;
      if (receiver !== undefined) lines[i] = `${head}${receiver}.${as || '<anonymous>'} (${place})`;
      else if (isNew !== undefined) lines[i] = `${head}<anonymous> (${place})`;
      else lines[i] = `${head}${place}`;
    }
    return lines.join('\n');
  }
  // Once the process has continued: every stack is formatted by node's own function, then
  // mended (a notebook that sets Error.prepareStackTrace gets V8's call sites as they are).
  function mendStacks() {
    if (typeof nodeFormat !== 'function' || NativeError.prepareStackTrace !== nodeFormat) return;
    NativeError.prepareStackTrace = {
      ErrorPrepareStackTrace(error, trace) {
        return mended(Reflect.apply(nodeFormat, this, [error, trace]));
      },
    }.ErrorPrepareStackTrace;
  }
  function mendError(err) {
    try {
      const stack = err.stack;
      const fixed = mended(stack);
      if (fixed !== stack) err.stack = fixed;
    } catch (e) {
      // not an object, or its stack cannot be read or set: as it is
    }
  }

  const watched = plan.snapshots ? watch() : null;

  function setup(cmd) {
    const env = watched.env;
    for (const name of Object.keys(env)) if (!(name in cmd.env)) delete env[name];
    for (const [name, value] of Object.entries(cmd.env)) env[name] = value;
    if (watched.cwd() !== cmd.cwd) watched.chdir(cmd.cwd);
    inspecting = cmd.inspect;
    watched.saved.clear(); // this run keeps its own starting states
  }

  const tonic = {
    v: NONE,
    // Pause site after cell k: report, then block until tonic says how to go on.
    p(k) {
      const ms = now() - mark;
      if (loader === null) loaderFrames();
      const modules = watched ? newModules() : undefined;
      const inspected = inspecting && valueCells.has(k) && tonic.v !== NONE;
      const value = inspected ? show(tonic.v) : undefined;
      tonic.v = NONE;
      lastCell = k;
      send(events.pause(k, ms, modules, value, watched ? watched.take() : undefined));
      let cmd = receive();
      while (commands.isSetup(cmd)) {
        setup(cmd);
        cmd = receive();
      }
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
      if (Array.isArray(cmd.free)) {
        // In sloppy eval'd code, a ReferenceError for one of these would point elsewhere
        // than node's (see tonic/timetravel/continuation/free.py): tonic runs afresh.
        const missing = cmd.free.find((name) => !(name in globalThis));
        if (missing !== undefined) {
          send(events.error(k, 'unfit', missing, 0));
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
      callerSite();
      if (sites.length === 1) mendStacks();
      return source;
    },
  };
  Object.defineProperty(globalThis, '__tonic__', { value: tonic, enumerable: false });

  process.on('uncaughtExceptionMonitor', (err, origin) => {
    mendError(err);
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
  // Snapshot runs: tonic answers once it has taken in what node's start-up did, so that
  // what the first cell does is told apart from it.
  if (plan.snapshots) receive();
})();
