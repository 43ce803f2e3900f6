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
    // continued run does not compile).
    error: (after, origin, error, ms) => ({ ev: 'error', after, origin, error, ms }),
    // The main thread is about to change (or open) `path` for the first time in this
    // process: tonic keeps what is there first, and answers {op: 'saved'}.
    save: (path) => ({ ev: 'save', path }),
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
