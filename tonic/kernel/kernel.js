// tonic's node-side kernel, preloaded with `node -r kernel.js FILE`.
//
// It lets node's own module loader compile and run FILE, but hands it the instrumented
// source (pause sites between cells; see tonic/notebook/instrument.py). At each pause
// site it reports to tonic and blocks in read(2) on a pipe until tonic answers, so
// nothing else (no microtask, no timer) runs between cells, and the process can be
// checkpointed there.
//
// It hides itself: its environment variable, its `-r` flag in process.execArgv and its
// require.cache entry are removed before the notebook runs, and the pause sites reach it
// through `__tonic__`, a global lexical binding (like a script's top-level `let`: no
// property of globalThis), made only when the source has pause sites (a notebook whose
// source names `__tonic__` runs unsplit, without it).
//
// The notebook cannot break it: what runs once the notebook started (the pauses, the
// messages, the watch() hooks, value inspection, stack mending, the exit and
// uncaughtExceptionMonitor listeners) uses only the copies of builtins taken here first,
// as node's internal primordials do. It looks up no method on a prototype or a global at
// call time, uses no iterator (no spread, for-of or array destructuring), reads commands'
// fields as own properties only and makes its own objects without a prototype.
'use strict';

(function tonicKernel() {
  // -- the builtins the kernel uses after the notebook started ---------------------------
  const { bind, call, apply: FunctionPrototypeApply } = Function.prototype;
  const uncurry = bind.bind(call); // uncurry(f)(self, ...args) is f.call(self, ...args)
  const {
    apply: ReflectApply,
    defineProperty: ReflectDefineProperty,
    deleteProperty: ReflectDeleteProperty,
    getOwnPropertyDescriptor: ReflectGetOwnPropertyDescriptor,
    ownKeys: ReflectOwnKeys,
    getPrototypeOf: ReflectGetPrototypeOf,
  } = Reflect;
  const ObjectPrototype = Object.prototype;
  const { keys: ObjectKeys, hasOwn: ObjectHasOwn } = Object;
  const { isArray: ArrayIsArray } = Array;
  const ArrayPrototypeSort = uncurry(Array.prototype.sort);
  const ArrayPrototypeJoin = uncurry(Array.prototype.join);
  const ArrayPrototypeIncludes = uncurry(Array.prototype.includes);
  const StringCtor = String;
  const NumberCtor = Number;
  const StringPrototypeIndexOf = uncurry(String.prototype.indexOf);
  const StringPrototypeLastIndexOf = uncurry(String.prototype.lastIndexOf);
  const StringPrototypeSlice = uncurry(String.prototype.slice);
  const StringPrototypeReplaceAll = uncurry(String.prototype.replaceAll);
  const StringPrototypeStartsWith = uncurry(String.prototype.startsWith);
  const StringPrototypeEndsWith = uncurry(String.prototype.endsWith);
  const StringPrototypeTrim = uncurry(String.prototype.trim);
  const RegExpPrototypeExec = uncurry(RegExp.prototype.exec);
  const PromisePrototypeThen = uncurry(Promise.prototype.then);
  const { stringify: JSONStringify, parse: JSONParse } = JSON;
  const MathMax = Math.max;
  const BufferFrom = Buffer.from;
  const BufferPrototypeUtf8Slice = uncurry(Buffer.prototype.utf8Slice);
  const BufferPrototypeBase64Slice = uncurry(Buffer.prototype.base64Slice);
  const MIME = Symbol.for('tonic.mime');
  const ProxyCtor = Proxy;
  const BufferCtor = Buffer;
  const proc = process; // a notebook may set globalThis.process
  const globalObject = globalThis;
  const hrtime = process.hrtime;
  const hrtimeBigint = hrtime.bigint;
  const rawKill = process._kill;
  const reallyExit = process.reallyExit;
  const PID = process.pid;
  const on = uncurry(require('events').prototype.on);
  const off = uncurry(require('events').prototype.removeListener);
  const prepend = uncurry(require('events').prototype.prependListener);

  const fs = require('fs');
  const util = require('util');
  const url = require('url');
  const vm = require('vm');
  const path = require('path');
  const Module = require('module');
  const { writeSync, readSync, openSync, closeSync, fstatSync } = fs;
  const inspect = util.inspect;
  const isNativeError = util.types.isNativeError;
  const isPromise = util.types.isPromise;
  const { isProxy, isUint8Array, isMap, isSet, isArrayBufferView, isBoxedPrimitive } = util.types;
  const MapPrototypeForEach = uncurry(Map.prototype.forEach);
  const SetPrototypeForEach = uncurry(Set.prototype.forEach);
  const SymbolPrototypeToString = uncurry(Symbol.prototype.toString);
  const compileFunction = vm.compileFunction;
  const pathResolve = path.resolve;

  // A list's next element, defined (no setter of Array.prototype runs).
  function append(list, value) {
    ReflectDefineProperty(list, list.length, {
      __proto__: null, value, writable: true, enumerable: true, configurable: true,
    });
  }
  // A command's field: its own property, else undefined.
  const own = (obj, key) =>
    (obj !== null && typeof obj === 'object' && ObjectHasOwn(obj, key) ? obj[key] : undefined);
  // Sets of strings (or numbers) are objects without a prototype.
  const newSet = () => ({ __proto__: null });
  const sorted = (set) => ArrayPrototypeSort(ObjectKeys(set));
  function lines(text) {
    const out = [];
    let start = 0;
    for (;;) {
      const nl = StringPrototypeIndexOf(text, '\n', start);
      if (nl === -1) {
        append(out, StringPrototypeSlice(text, start));
        return out;
      }
      append(out, StringPrototypeSlice(text, start, nl));
      start = nl + 1;
    }
  }
  // A listener of process events: node's EventEmitter calls `listener.apply(...)`, which a
  // notebook may have replaced on Function.prototype.
  function listener(fn) {
    ReflectDefineProperty(fn, 'apply', { __proto__: null, value: FunctionPrototypeApply });
    return fn;
  }

  // The messages between tonic and the kernel, one JSON object a line (the other side:
  // tonic/kernel/protocol.py). Events go to tonic on the event pipe; commands, one
  // answering each pause, come from tonic on the command pipe: {op: 'go'}, or
  // {op: 'eval', source, values?, check?, free?} to continue with an edited rest of the
  // notebook (see tonic/timetravel/continuation/).
  const events = {
    __proto__: null,
    // `typescript` (a TypeScript notebook): how node runs its types, '' where it cannot
    hello: (pid, kind, typescript) => ({ __proto__: null, ev: 'hello', pid, kind, typescript }),
    // After cell `cell`: its time, the files its require() loaded and what it used of
    // its surroundings (snapshot runs: `seen`), and its completion value (when
    // inspected), each left out when undefined.
    // `mime`: the value's rich forms (rich(), below), MIME type to text or 'base64:...'.
    pause: (cell, ms, modules, value, seen, mime) =>
      ({ __proto__: null, ev: 'pause', cell, ms, modules, value, seen, mime }),
    // An uncaught error after pause `after` (origin 'early': the edited file of a
    // continued run does not compile; 'unfit': a name its edited cells call is missing,
    // `error` names it).
    error: (after, origin, error, ms) =>
      ({ __proto__: null, ev: 'error', after, origin, error, ms }),
    // The main thread is about to change (or open) `path` for the first time in this
    // process: tonic keeps what is there first, and answers {op: 'saved'}.
    save: (path) => ({ __proto__: null, ev: 'save', path }),
    // A restored kernel checked the edited file it continues with: it runs it now.
    continuing: () => ({ __proto__: null, ev: 'continuing' }),
  };
  const commands = {
    __proto__: null,
    isEval: (cmd) => own(cmd, 'op') === 'eval',
    // Sent to a restored kernel before the command answering its pause: the run's
    // environment, working directory and whether it inspects values.
    isSetup: (cmd) => own(cmd, 'op') === 'setup',
  };
  // JSON of the kernel's own messages (strings, numbers, booleans, null, lists and
  // objects of those; undefined fields left out), built without JSON.stringify's
  // lookups of toJSON on objects.
  function encode(value) {
    if (value === null || typeof value !== 'object') return JSONStringify(value);
    let out = '';
    if (ArrayIsArray(value)) {
      for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + encode(value[i]);
      return '[' + out + ']';
    }
    const keys = ObjectKeys(value);
    for (let i = 0; i < keys.length; i++) {
      const field = value[keys[i]];
      if (field === undefined) continue;
      out += (out === '' ? '' : ',') + JSONStringify(keys[i]) + ':' + encode(field);
    }
    return '{' + out + '}';
  }

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
  // reopen them close-on-exec, out of the way, and close the originals: the notebook's
  // child processes do not inherit them, and the notebook's own fds 3 and 4 are as free
  // as in plain node. As pipes they survive checkpoint and restore. (The clock shim has
  // already moved them to its fds 1021 and 1022, close-on-exec: it tells a pause from
  // other reads by that fd. Where it could not, they stay on 3 and 4.)
  let cmdFd = 3;
  let evFd = 4;
  if (plan.shim) {
    try {
      fstatSync(1021);
      cmdFd = 1021;
      evFd = 1022;
    } catch (err) {
      // the shim kept them on 3 and 4
    }
  } else {
    cmdFd = openSync('/proc/self/fd/3', 'r');
    evFd = openSync('/proc/self/fd/4', 'w');
    closeSync(3);
    closeSync(4);
  }
  for (const [name, value] of Object.entries(plan.env || {})) {
    if (value === null) delete process.env[name];
    else process.env[name] = value;
  }
  let valueCells = newSet();
  for (const cell of plan.values) valueCells[cell] = true;
  let inspecting = plan.inspect;
  const NONE = Symbol('none');
  const INSPECT = {
    __proto__: null,
    depth: 2, colors: false, customInspect: false, getters: false,
    maxArrayLength: 100, maxStringLength: 10000, breakLength: 100,
  };
  const SHALLOW = { __proto__: null, depth: -1 };
  const TABLE_CELL = {
    __proto__: null,
    depth: 0, colors: false, customInspect: false, getters: false,
    maxArrayLength: 10, maxStringLength: 200, breakLength: Infinity,
  };

  function die() {
    // tonic went away: nobody can resume us, and nobody reads our output.
    try {
      ReflectApply(rawKill, proc, [PID, 9]);
    } finally {
      ReflectApply(reallyExit, proc, [137]);
    }
  }

  // What the kernel does inside the notebook's calls (its hooks): a bug of the kernel's
  // must not change what the notebook sees.
  function guarded(fn, arg) {
    try {
      fn(arg);
    } catch (err) {
      // the observation is lost, the call goes on
    }
  }

  // While true, fs calls are the kernel's own: the watch() hooks let them be.
  let busy = false;
  // The notebook closed the kernel's channels: it runs on as in plain node, without
  // pauses (EBADF; any other failure means that tonic went away).
  let lost = false;
  const closed = (err) => err !== null && typeof err === 'object' && own(err, 'code') === 'EBADF';

  function send(msg) {
    if (lost) return;
    const data = ReflectApply(BufferFrom, BufferCtor, [encode(msg) + '\n', 'utf8']);
    const was = busy;
    busy = true;
    let off = 0;
    try {
      while (off < data.length) {
        const n = writeSync(evFd, data, off, data.length - off);
        if (!(n > 0)) die();
        off += n;
      }
    } catch (err) {
      if (closed(err)) lost = true;
      else die();
    } finally {
      busy = was;
    }
  }

  const cmdBuf = Buffer.alloc(65536);
  let leftover = ''; // what arrived after the last line (tonic may send two at once)
  function receive() {
    let line = leftover;
    const was = busy;
    busy = true;
    try {
      for (;;) {
        const end = StringPrototypeIndexOf(line, '\n');
        if (end !== -1) {
          leftover = StringPrototypeSlice(line, end + 1);
          return JSONParse(StringPrototypeSlice(line, 0, end));
        }
        if (lost) return { __proto__: null, op: 'go' };
        let n;
        try {
          n = readSync(cmdFd, cmdBuf, 0, cmdBuf.length, null);
        } catch (err) {
          const code = err !== null && typeof err === 'object' ? own(err, 'code') : undefined;
          if (code === 'EAGAIN' || code === 'EINTR') continue;
          if (code === 'EBADF') lost = true;
          else die();
          continue;
        }
        if (n === 0) die();
        // tonic's commands are ASCII (json.dumps escapes the rest)
        line += BufferPrototypeUtf8Slice(cmdBuf, 0, n);
      }
    } finally {
      busy = was;
    }
  }

  function show(value) {
    try {
      // Not a promise's reason: inspecting it formats an error's stack, and node then
      // reports that unhandled rejection at its own line instead of the error's.
      if (isPromise(value)) return inspect(value, SHALLOW);
      return inspect(value, INSPECT);
    } catch (err) {
      return '<value could not be inspected>';
    }
  }

  // A value's rich forms, for a view that shows more than text: what it carries under
  // Symbol.for('tonic.mime') (MIME type to a string, a Buffer or Uint8Array), a PNG or
  // JPEG in a Uint8Array, or an array of plain objects as a table. Only own data
  // properties are read (no getter, no proxy runs: nothing of the notebook's executes).
  const RICH = 16 << 20; // characters of rich forms at most
  const IMAGES = { __proto__: null, 'image/png': [0x89, 0x50, 0x4e, 0x47], 'image/jpeg': [0xff, 0xd8, 0xff] };
  const IMAGE_TYPES = ObjectKeys(IMAGES);
  function data(value) {
    const d = value !== null && typeof value === 'object' && !isProxy(value)
      ? ReflectGetOwnPropertyDescriptor(value, MIME) : undefined;
    return d !== undefined && ObjectHasOwn(d, 'value') ? d.value : undefined;
  }
  function richText(x) {
    if (typeof x === 'string') return x;
    if (isUint8Array(x)) return 'base64:' + BufferPrototypeBase64Slice(x, 0, x.length);
    return undefined;
  }
  function table(rows) {
    if (!ArrayIsArray(rows) || isProxy(rows) || rows.length === 0 || rows.length > 1000) return;
    const columns = newSet();
    const body = [];
    for (let i = 0; i < rows.length; i++) {
      const at = ReflectGetOwnPropertyDescriptor(rows, i);
      const row = at !== undefined && ObjectHasOwn(at, 'value') ? at.value : null;
      if (row === null || typeof row !== 'object' || isProxy(row) || ArrayIsArray(row)) return;
      const proto = ReflectGetPrototypeOf(row);
      if (proto !== ObjectPrototype && proto !== null) return;
      const cells = newSet();
      const keys = ObjectKeys(row);
      for (let j = 0; j < keys.length; j++) {
        const key = keys[j];
        const d = ReflectGetOwnPropertyDescriptor(row, key);
        columns[key] = true;
        cells[key] = ObjectHasOwn(d, 'value') ? inspect(d.value, TABLE_CELL) : '[Getter]';
      }
      append(body, cells);
    }
    const names = ObjectKeys(columns);
    if (names.length > 50) return;
    return { __proto__: null, 'application/vnd.tonic.table+json':
      encode({ __proto__: null, columns: names, rows: body }) };
  }
  // A value as a tree to open level by level (the page's devtools-like view): each node
  // [label] or [label, [[key, node], ...]]; an object's own properties (a getter is a
  // leaf, never called), a Map's entries, a Set's values. Bounded in nodes and depth; a
  // cycle is a leaf.
  const TREE = 'application/vnd.tonic.tree+json';
  const TREE_NODES = 1000;
  const TREE_DEPTH = 8;
  const TREE_KEYS = 100; // children shown of one node, the rest counted
  function tree(value) {
    if (value === null || typeof value !== 'object' || isProxy(value)) return undefined;
    if (isArrayBufferView(value) || isBoxedPrimitive(value) || isPromise(value)) return undefined;
    let budget = TREE_NODES;
    const open = [];
    function label(x) {
      // (a promise's reason is not inspected: node would report its rejection there)
      let text = isPromise(x) ? inspect(x, SHALLOW) : inspect(x, TABLE_CELL);
      if (StringPrototypeIndexOf(text, '\n') !== -1) {
        const parts = lines(text); // an error's stack: its first line; else one line
        if (isNativeError(x)) text = parts[0] + ' …';
        else {
          for (let i = 0; i < parts.length; i++) parts[i] = StringPrototypeTrim(parts[i]);
          text = ArrayPrototypeJoin(parts, ' ');
        }
      }
      return text.length > 120 ? StringPrototypeSlice(text, 0, 119) + '…' : text;
    }
    function key(k) {
      return typeof k === 'symbol' ? '[' + SymbolPrototypeToString(k) + ']' : k;
    }
    function node(x, depth) {
      budget--;
      if (x === null || typeof x !== 'object' || isProxy(x) || isArrayBufferView(x) || isPromise(x)) {
        return [label(x)];
      }
      for (let i = 0; i < open.length; i++) if (open[i] === x) return ['[Circular]'];
      const here = [label(x)];
      if (depth >= TREE_DEPTH || budget <= 0) return here;
      const kids = [];
      let more = 0;
      const full = () => kids.length >= TREE_KEYS || budget <= 0;
      const add = (k, child) => {
        if (full()) more++;
        else append(kids, [k, child === NONE ? ['[Getter]'] : node(child, depth + 1)]);
      };
      append(open, x);
      if (isMap(x)) MapPrototypeForEach(x, (v, k) => add(label(k), v));
      else if (isSet(x)) SetPrototypeForEach(x, (v) => add(StringCtor(kids.length + more), v));
      const keys = ReflectOwnKeys(x);
      const skip = ArrayIsArray(x) ? 1 : 0; // an array's length
      for (let i = 0; i < keys.length; i++) {
        if (full()) {
          more += keys.length - i - skip;
          break;
        }
        const k = keys[i];
        if (skip && k === 'length') continue;
        const d = ReflectGetOwnPropertyDescriptor(x, k);
        add(key(k), ObjectHasOwn(d, 'value') ? d.value : NONE);
      }
      open.length--;
      if (more) append(kids, ['…', [more + ' more']]);
      if (kids.length) append(here, kids);
      return here;
    }
    const root = node(value, 0);
    return root.length > 1 ? encode(root) : undefined;
  }
  // An object's shapes: as a tree, and as a table where it is an array of plain objects.
  function shapes(value) {
    const t = tree(value);
    const forms = table(value) || (t === undefined ? undefined : newSet());
    if (forms !== undefined && t !== undefined) forms[TREE] = t;
    return forms;
  }
  function rich(value) {
    try {
      if (isUint8Array(value) && !isProxy(value)) {
        for (let t = 0; t < IMAGE_TYPES.length; t++) {
          const type = IMAGE_TYPES[t];
          const magic = IMAGES[type];
          let ok = value.length > magic.length;
          for (let i = 0; ok && i < magic.length; i++) ok = value[i] === magic[i];
          if (ok) return { __proto__: null, [type]: richText(value) };
        }
        return undefined;
      }
      const given = data(value);
      if (given === null || typeof given !== 'object' || isProxy(given)) return shapes(value);
      const out = newSet();
      let size = 0;
      const types = ObjectKeys(given);
      for (let t = 0; t < types.length; t++) {
        const type = types[t];
        const d = ReflectGetOwnPropertyDescriptor(given, type);
        const text = ObjectHasOwn(d, 'value') ? richText(d.value) : undefined;
        if (text === undefined || (size += text.length) > RICH) continue;
        out[type] = text;
      }
      return ObjectKeys(out).length ? out : undefined;
    } catch (err) {
      return undefined;
    }
  }

  const DESCRIBED = 1 << 20; // characters of an error's description at most
  function describe(err) {
    if (!inspecting) return null;
    let text;
    try {
      if (isNativeError(err)) text = StringCtor(err.stack);
    } catch (e) {
      // inspected instead
    }
    if (text === undefined) text = show(err);
    return text.length > DESCRIBED ? StringPrototypeSlice(text, 0, DESCRIBED) + '\n[...]' : text;
  }

  // Files the notebook's require() loaded since the last pause (snapshot keys cover them).
  const loaded = newSet();
  for (const name of Object.keys(Module._cache)) loaded[name] = true;
  loaded[plan.file] = true;
  function newModules() {
    const fresh = [];
    let names = [];
    try {
      names = ObjectKeys(Module._cache);
    } catch (err) {
      // the notebook replaced Module._cache
    }
    for (let i = 0; i < names.length; i++) {
      if (names[i] in loaded) continue;
      loaded[names[i]] = true;
      append(fresh, names[i]);
    }
    return fresh;
  }

  // node's major version, and its flags (command line and NODE_OPTIONS) as it started.
  const nodeMajor = +StringPrototypeSlice(process.versions.node, 0, 2);
  const startFlags = `${ArrayPrototypeJoin(process.execArgv, ' ')} ${process.env.NODE_OPTIONS || ''}`;

  // What the cells use of their surroundings, for the keys of their snapshots (see
  // tonic/timetravel/deps.py): the environment variables they read (all of them when
  // they list process.env, start a child process that inherits it, or a worker), whether
  // the working directory mattered (process.cwd(), process.chdir(), a relative path
  // given to fs, a child or worker started there), and the paths fs looked at without
  // necessarily opening them (stat, access, existsSync, require's lookups, failed
  // opens). Files opened, written and removed, by every process of the notebook, are
  // observed outside node (tonic/observe/).
  //
  // The hooks keep out of sight where they can: process.cwd and process.chdir are node's
  // own functions, handed out by getters; fs's binding functions too; no hook is a frame
  // on the stack of an error the notebook sees.
  function watch() {
    const names = newSet();
    let probes = newSet();
    let all = false;
    let cwdUsed = false;
    let worker = false;
    const realEnv = process.env;
    const note = (name) => {
      if (typeof name === 'string' && !busy) names[name] = true;
    };
    // process.env is a Proxy of a Proxy of node's own: the inner one's traps see the
    // names read and the listings, and act on node's own. util.inspect looks through
    // proxies: node 20 through the outer one only (it has no traps), so that printing
    // process.env lists it through the inner one's; node >= 22 to the innermost target,
    // and node >= 26 marks the proxy (`Proxy(...)`) unless that target has an inspect
    // function of its own. So the target is an empty object whose inspect function,
    // out of reach of anything but util.inspect, notes the listing and has node's own
    // process.env printed in its place.
    const target = {};
    ReflectDefineProperty(target, inspect.custom, {
      __proto__: null,
      value: { [inspect.custom.description]() {
        if (!busy) all = true;
        return realEnv;
      } }[inspect.custom.description],
      configurable: true,
    });
    const traps = {
      __proto__: null,
      get(_, name) { note(name); return realEnv[name]; },
      has(_, name) { note(name); return name in realEnv; },
      getOwnPropertyDescriptor(_, name) {
        note(name);
        return ReflectGetOwnPropertyDescriptor(realEnv, name);
      },
      ownKeys() { all = true; return ReflectOwnKeys(realEnv); },
      set(_, name, value) { realEnv[name] = value; return true; },
      deleteProperty(_, name) { return ReflectDeleteProperty(realEnv, name); },
      defineProperty(_, name, desc) { return ReflectDefineProperty(realEnv, name, desc); },
    };
    process.env = new ProxyCtor(new ProxyCtor(target, traps), { __proto__: null });
    const cwd = process.cwd;
    const chdir = process.chdir;
    // A property of `holder` read through a getter that notes the read first (the value
    // itself is node's, and the notebook may set another). `once`: the first read puts
    // the data property back as it was, so that the rest of the run sees node's own.
    function noting(holder, name, noted, once) {
      const desc = ReflectGetOwnPropertyDescriptor(holder, name);
      const enumerable = desc === undefined ? true : desc.enumerable;
      let current = holder[name];
      ReflectDefineProperty(holder, name, {
        __proto__: null,
        get: { [name]() {
          if (busy) return current;
          guarded(noted);
          if (once) {
            ReflectDefineProperty(holder, name, {
              __proto__: null, value: current, writable: true, enumerable, configurable: true,
            });
          }
          return current;
        } }[name],
        set: { [name](value) { current = value; } }[name],
        enumerable,
        configurable: true,
      });
    }
    // The working directory is one value for the whole run: once a cell used it, the
    // snapshots after that cell depend on it, and so do all later ones (their keys
    // include every earlier cell's uses). Seeing the first use of process.cwd and
    // process.chdir is enough; then they are node's own data properties again (and
    // V8 names their frames `process.wrappedChdir [as chdir]`, as in plain node).
    noting(process, 'cwd', () => { cwdUsed = true; }, true);
    noting(process, 'chdir', () => { cwdUsed = true; }, true);
    on(process, 'worker', listener(() => { all = true; cwdUsed = true; worker = true; }));

    // Every fs call and require() lookup passes its path through path.toNamespacedPath
    // (looked up at call time, a no-op on POSIX) before the system call: seen there, with
    // no frame of ours on the stack of an error the call throws.
    //
    // Before the main thread first changes a path (open, write, rename, unlink, copy),
    // tonic keeps what is there, so that it can put it back. fs reads each call's
    // binding function (a getter of ours: no frame on the call's stack) and validates
    // its paths, before or after that (`recent`, `pending`).
    let saved = newSet();
    let recent = [];
    let pending = null;
    function save(p) {
      if (p in saved) return;
      saved[p] = true;
      send(events.save(p));
      receive();
    }
    const toNamespacedPath = path.toNamespacedPath;
    function probed(p) {
      if (!StringPrototypeStartsWith(p, '/')) cwdUsed = true;
      const abs = ReflectApply(pathResolve, path, [ReflectApply(cwd, proc, []), p]);
      probes[abs] = true;
      if (recent.length < 4) append(recent, abs);
      else recent = [recent[1], recent[2], recent[3], abs];
      if (pending !== null) {
        if (pending.seen++ >= pending.from) save(abs);
        if (pending.seen >= pending.paths) pending = null;
      }
      return abs;
    }
    path.toNamespacedPath = { toNamespacedPath(p) {
      if (typeof p === 'string' && !busy) guarded(probed, p);
      return ReflectApply(toNamespacedPath, this, [p]);
    } }.toNamespacedPath;
    // name -> [how many paths the call takes, the first of them it changes]
    const CHANGES = {
      __proto__: null,
      open: [1, 0], openFileHandle: [1, 0], writeFileUtf8: [1, 0], unlink: [1, 0],
      rename: [2, 0], copyFile: [2, 1],
    };
    function calling(name) {
      if (busy) return;
      const paths = recent;
      recent = [];
      pending = null;
      const change = CHANGES[name];
      if (change === undefined) return;
      if (paths.length === 0) {
        pending = { __proto__: null, paths: change[0], from: change[1], seen: 0 };
        return;
      }
      const first = MathMax(0, paths.length - change[0]);
      for (let i = first + change[1]; i < paths.length; i++) save(paths[i]);
    }
    // node >= 22 no longer passes fs's paths through path.toNamespacedPath (a no-op on
    // POSIX): there, the binding functions that take paths are wrappers, which see the
    // paths given (PATHS: name -> the indices of the paths it looks at, and of those it
    // changes). A wrapper is a frame of ours: the stack of an error the call throws is
    // captured again without it. (process.binding('fs'), deprecated, shows them.)
    const bypassed = nodeMajor >= 22;
    const PATHS = {
      __proto__: null,
      access: [[0], []], existsSync: [[0], []], stat: [[0], []], lstat: [[0], []],
      statfs: [[0], []], readdir: [[0], []], readdirRecursive: [[0], []],
      readlink: [[0], []], realpath: [[0], []], readFileUtf8: [[0], []],
      internalModuleStat: [[0, 1], []], getFormatOfExtensionlessFile: [[0], []],
      mkdir: [[0], []], rmdir: [[0], []], chmod: [[0], []], chown: [[0], []],
      lchown: [[0], []], utimes: [[0], []], lutimes: [[0], []], link: [[0, 1], []],
      symlink: [[1], []], cpSyncCheckPaths: [[0, 1], []], cpSyncCopyDir: [[0, 1], []],
      open: [[0], [0]], openFileHandle: [[0], [0]], writeFileUtf8: [[0], [0]],
      unlink: [[0], [0]], rename: [[0, 1], [0, 1]], copyFile: [[0, 1], [1]],
      rmSync: [[0], [0]], cpSyncOverrideFile: [[0, 1], [1]],
    };
    const recapture = Error.captureStackTrace;
    function wrapPaths(holder, name) {
      const original = holder[name];
      const [looks, changes] = PATHS[name];
      const seeing = (args) => {
        for (let i = 0; i < looks.length; i++) {
          const p = args[looks[i]];
          if (typeof p !== 'string') continue;
          const abs = probed(p);
          if (ArrayPrototypeIncludes(changes, looks[i])) save(abs);
        }
      };
      const wrapper = { [name](...args) {
        if (!busy) guarded(seeing, args);
        try {
          return ReflectApply(original, this, args);
        } catch (err) {
          if (err !== null && typeof err === 'object') guarded(() => recapture(err, wrapper));
          throw err;
        }
      } }[name];
      holder[name] = wrapper;
    }
    // process.binding() would warn: the children's working directory cannot be seen, nor
    // files kept before the main thread changes them.
    const blind = /--(pending|throw|trace)-deprecation/.test(startFlags);
    if (!blind) {
      const fsb = process.binding('fs');
      for (const name of Object.keys(fsb)) {
        if (typeof fsb[name] !== 'function') continue;
        if (bypassed && PATHS[name] !== undefined) wrapPaths(fsb, name);
        else noting(fsb, name, () => calling(name), false);
      }
      const spawned = (options) => {
        if (busy) return;
        all = true; // a child inherits the environment (its envPairs were listed)
        const dir = options !== null && typeof options === 'object' ? options.cwd : undefined;
        if (typeof dir !== 'string' || !StringPrototypeStartsWith(dir, '/')) cwdUsed = true;
      };
      const sync = process.binding('spawn_sync');
      const spawnSync = sync.spawn;
      // (All the arguments go on: node 24 hands the stdio apart from the options.)
      sync.spawn = { spawn(options) {
        guarded(spawned, options);
        return ReflectApply(spawnSync, this, arguments);
      } }.spawn;
      const proto = process.binding('process_wrap').Process.prototype;
      const spawn = proto.spawn;
      proto.spawn = { spawn(options) {
        guarded(spawned, options);
        return ReflectApply(spawn, this, arguments);
      } }.spawn;
    }
    return {
      __proto__: null,
      env: realEnv,
      forget() { saved = newSet(); }, // a new run keeps its own starting states
      cwd: () => ReflectApply(cwd, proc, []),
      chdir: (dir) => ReflectApply(chdir, proc, [dir]),
      // What the cell since the last pause used; then start afresh.
      take() {
        const used = {
          __proto__: null,
          env: sorted(names), all, cwd: cwdUsed || blind, probes: sorted(probes), worker,
        };
        worker = false;
        const read = ObjectKeys(names);
        for (let i = 0; i < read.length; i++) delete names[read[i]];
        probes = newSet();
        all = false;
        cwdUsed = false;
        return used;
      },
    };
  }

  const now = () => NumberCtor(ReflectApply(hrtimeBigint, hrtime, [])) / 1e6;
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
    const open = StringPrototypeLastIndexOf(frame, ' (');
    if (StringPrototypeEndsWith(frame, ')') && open !== -1) {
      return StringPrototypeSlice(frame, open + 2, -1);
    }
    return StringPrototypeStartsWith(frame, '    at ') ? StringPrototypeSlice(frame, 7) : frame;
  };
  // L of `F:L:C`
  const lineOf = (frame) => {
    const place = where(frame);
    const colon = StringPrototypeLastIndexOf(place, ':');
    if (colon === -1) return place;
    const before = colon === 0 ? -1 : StringPrototypeLastIndexOf(place, ':', colon - 1);
    return StringPrototypeSlice(place, before + 1, colon);
  };
  // The frames above `fn` (all of them), as `NAME (F:L:C)` or `F:L:C`, or null.
  function trace(fn) {
    const holder = {};
    const saved = NativeError.prepareStackTrace;
    const limit = NativeError.stackTraceLimit;
    try {
      NativeError.prepareStackTrace = asTrace;
      NativeError.stackTraceLimit = Infinity;
    } catch (err) {
      guarded(() => { NativeError.prepareStackTrace = saved; });
      return traceText(fn); // the notebook froze Error
    }
    try {
      captureStackTrace(holder, fn);
      const sites = holder.stack;
      if (!ArrayIsArray(sites)) return null;
      const frames = [];
      for (let i = 0; i < sites.length; i++) append(frames, StringCtor(sites[i]));
      return frames;
    } catch (err) {
      return null;
    } finally {
      guarded(() => {
        NativeError.stackTraceLimit = limit;
        NativeError.prepareStackTrace = saved;
      });
    }
  }
  // The same from the text of a stack, as node formats it (within Error.stackTraceLimit).
  function traceText(fn) {
    try {
      const holder = {};
      captureStackTrace(holder, fn);
      if (typeof holder.stack !== 'string') return null;
      const all = lines(holder.stack);
      const frames = [];
      for (let i = 0; i < all.length; i++) {
        if (StringPrototypeStartsWith(all[i], '    at ')) append(frames, StringPrototypeSlice(all[i], 7));
      }
      return frames;
    } catch (err) {
      return null;
    }
  }
  function callerSite() {
    const frames = trace(tonic.t);
    if (frames === null || frames.length <= 1) return;
    append(sites, [frames[0], frames[1]]);
    if (esm && sites.length === 1) {
      below = [];
      for (let i = 2; i < frames.length; i++) append(below, '    at ' + frames[i]);
    }
  }
  // A continued ES module's pause sites push frames: the eval's top level calling the
  // async arrow, the site's arrow calling eval and the module's frame at the site (or,
  // once the arrow awaited, the module's `async` frame at the site's `await`), at fixed
  // columns of the site's text before its call of tonic.t(). `below`: node's frames
  // under the first site.
  let below = [];
  const GENERATOR_NEXT = '    at AsyncGenerator.next (<anonymous>)';
  const EVAL_BEFORE_T = 15;
  const AWAIT_BEFORE_T = 38;
  function shifted(place, columns) {
    const colon = StringPrototypeLastIndexOf(place, ':');
    return StringPrototypeSlice(place, 0, colon + 1) +
      (NumberCtor(StringPrototypeSlice(place, colon + 1)) - columns);
  }
  const placeOf = (frame) => {
    const place = where(frame);
    return StringPrototypeStartsWith(place, 'async ') ? StringPrototypeSlice(place, 6) : place;
  };
  // The level whose site's arrow is at `place`, -2 - the level whose site awaits there,
  // else -1.
  function moduleSiteAt(place) {
    for (let level = 0; level < sites.length; level++) {
      const t = where(sites[level][0]);
      if (place === shifted(t, EVAL_BEFORE_T)) return level;
      if (place === shifted(t, AWAIT_BEFORE_T)) return -2 - level;
    }
    return -1;
  }
  function mendedModule(all) {
    const out = [];
    let dropped = 0;
    for (let i = 0; i < all.length; i++) {
      const level = StringPrototypeStartsWith(all[i], '    at ') ? moduleSiteAt(placeOf(all[i])) : -1;
      if (level === -1) {
        append(out, all[i]);
        continue;
      }
      dropped++;
      if (level < -1) continue; // a module's await at the site
      if (out.length > 0 && isEvalFrame(out[out.length - 1])) {
        out.length--; // the eval's top level, which started the generator
        dropped++;
        if (out.length > 0 && out[out.length - 1] === GENERATOR_NEXT) {
          out.length--;
          dropped++;
        }
      }
      if (i + 1 < all.length && where(all[i + 1]) === where(sites[level][1])) {
        i++;
        dropped++;
      }
    }
    // The frames the sites pushed out of Error.stackTraceLimit: node's below the first.
    const limit = NativeError.stackTraceLimit;
    let frames = 0;
    for (let i = 0; i < all.length; i++) if (StringPrototypeStartsWith(all[i], '    at ')) frames++;
    if (dropped > 0 && typeof limit === 'number' && frames >= limit) {
      let have = 0;
      for (let j = below.length; j > 0 && have === 0; j--) {
        let match = out.length >= j;
        for (let x = 0; match && x < j; x++) match = out[out.length - j + x] === below[x];
        if (match) have = j;
      }
      for (let x = have; x < below.length && frames - dropped + x - have < limit; x++) {
        append(out, below[x]);
      }
    }
    return renamed(out);
  }
  // `    at [async ][new ][RECEIVER.]eval[ [as NAME]] (FILE:L:C)`, FILE as node names the
  // notebook in stacks (a TypeScript file's name is known once node compiled it, before
  // any cell ran).
  function evalFrames(name) {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return new RegExp(
      `^(    at (?:async )?(new )?)(?:(\\S+)\\.)?eval(?: \\[as (\\S+)\\])? \\((${escaped}:\\d+:\\d+)\\)$`,
    );
  }
  const esm = plan.kind === 'esm';
  const moduleUrl = esm ? url.pathToFileURL(plan.file).href : undefined; // its name in stacks
  let evalFrame = evalFrames(esm ? moduleUrl : plan.file);
  const isEvalFrame = (line) => RegExpPrototypeExec(evalFrame, line) !== null;
  // node's frames below the module's own (its loader), for the frames a continued run's
  // pause sites pushed out of Error.stackTraceLimit.
  let loader = null;
  function loaderFrames() {
    const frames = trace(tonic.p);
    if (frames === null) return;
    loader = [];
    for (let i = 1; i < frames.length; i++) append(loader, '    at ' + frames[i]);
  }
  // The newest continuation whose pause site's arrow is at the line of `frame`, or -1.
  function siteAt(frame) {
    const line = lineOf(frame);
    for (let level = 0; level < sites.length; level++) {
      if (lineOf(sites[level][0]) === line) return level;
    }
    return -1;
  }
  function mended(stack) {
    if (typeof stack !== 'string' || sites.length === 0) return stack;
    const all = lines(stack);
    if (esm) return mendedModule(all);
    // The top level of the newest eval on the stack: an eval frame above a pause site's
    // arrow, above the previous eval's top level (or the module's frame), and so on.
    let top = -1;
    let level = -1;
    for (let i = 0; i + 1 < all.length && top === -1; i++) {
      if (!isEvalFrame(all[i])) continue;
      level = siteAt(all[i + 1]);
      if (level !== -1) top = i;
    }
    let end = top;
    for (; top !== -1 && level >= 0; level--) {
      if (end + 1 >= all.length) break; // the limit cut the stack: the rest is known
      if (lineOf(all[end + 1]) !== lineOf(sites[level][0])) return stack;
      if (end + 2 >= all.length) break;
      if (where(all[end + 2]) !== where(sites[level][1])) return stack;
      end += 2;
    }
    let out = all;
    if (top !== -1 && loader !== null) {
      out = [];
      let above = 0;
      for (let i = 0; i < top; i++) {
        append(out, all[i]);
        if (StringPrototypeStartsWith(all[i], '    at ')) above++;
      }
      const limit = NativeError.stackTraceLimit;
      const room = typeof limit === 'number' ? MathMax(0, limit - above) : loader.length + 1;
      if (room > 0) append(out, '    at Object.<anonymous> (' + where(all[top]) + ')');
      for (let i = 0; i + 1 < room && i < loader.length; i++) append(out, loader[i]);
    }
    return renamed(out);
  }
  // The frames of the edited cells' code as node names them: `eval` is no name.
  function renamed(out) {
    for (let i = 0; i < out.length; i++) {
      const m = RegExpPrototypeExec(evalFrame, out[i]);
      if (m === null) continue;
      const head = m[1];
      const place = m[5];
      if (m[3] !== undefined) out[i] = head + m[3] + '.' + (m[4] || '<anonymous>') + ' (' + place + ')';
      else if (m[2] !== undefined) out[i] = head + '<anonymous> (' + place + ')';
      else out[i] = head + place;
    }
    return ArrayPrototypeJoin(out, '\n');
  }
  // Once the process has continued: every stack is formatted by node's own function, then
  // mended (a notebook that sets Error.prepareStackTrace gets V8's call sites as they are).
  function mendStacks() {
    if (typeof nodeFormat !== 'function' || NativeError.prepareStackTrace !== nodeFormat) return;
    NativeError.prepareStackTrace = {
      ErrorPrepareStackTrace(error, trace) {
        const stack = ReflectApply(nodeFormat, this, [error, trace]);
        try {
          return mended(stack);
        } catch (err) {
          return stack;
        }
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
    const wanted = own(cmd, 'env');
    const want = wanted !== null && typeof wanted === 'object' ? wanted : {};
    const present = ObjectKeys(env);
    for (let i = 0; i < present.length; i++) {
      if (!ObjectHasOwn(want, present[i])) delete env[present[i]];
    }
    const names = ObjectKeys(want);
    for (let i = 0; i < names.length; i++) env[names[i]] = want[names[i]];
    const dir = own(cmd, 'cwd');
    if (typeof dir === 'string' && watched.cwd() !== dir) watched.chdir(dir);
    inspecting = own(cmd, 'inspect') === true;
    watched.forget();
  }

  // A TypeScript notebook's edited file and rest, as node's loader hands them to V8: types
  // stripped (node 22.18 and later; the same stripper, so every character stays where it
  // was). The public stripper warns once that it is experimental, where node's loader
  // strips without a word: that warning is not shown.
  const typescript = plan.typescript ? proc.features.typescript : undefined;
  const stripTypes = Module.stripTypeScriptTypes;
  function stripped(source, sourceUrl) {
    if (typeof typescript !== 'string' || typeof stripTypes !== 'function') return source;
    const warn = ReflectGetOwnPropertyDescriptor(proc, 'emitWarning');
    ReflectDefineProperty(proc, 'emitWarning', {
      __proto__: null, value: () => {}, writable: true, configurable: true,
    });
    try {
      const options = { __proto__: null, mode: 'strip', sourceUrl };
      return ReflectApply(stripTypes, Module, [source, options]);
    } finally {
      if (warn === undefined) ReflectDeleteProperty(proc, 'emitWarning');
      else ReflectDefineProperty(proc, 'emitWarning', warn);
    }
  }
  // node's stripper takes no top-level `return` (TypeScript has none), which a CommonJS
  // pause site needs: the kernel strips the file with a `void 0` of the same length in
  // each site, puts the `return`s back and has node's own Module#_compile compile that
  // as CommonJS (bound, so no frame of the kernel's is on the stack), as node would with
  // what its stripper made, `sourceURL` and all. `compiled`: it did.
  const SITE_RETURN = '__tonic__.t()))();return}';
  const SITE_VOID = '__tonic__.t()))();void 0}';
  const SOURCE_URL = '//# sourceURL=';
  let compiled = false;
  // what node names the file in stacks (set with `compiled`; an ES module's file: URL)
  let scriptName = moduleUrl;
  function compileStripped(source) {
    const proto = Module.prototype;
    const own = ReflectGetOwnPropertyDescriptor(proto, '_compile');
    if (own === undefined || typeof own.value !== 'function') return false;
    let js;
    try {
      const placed = StringPrototypeReplaceAll(source, SITE_RETURN, SITE_VOID);
      scriptName = strippedName(own.value);
      evalFrame = evalFrames(scriptName);
      js = stripped(placed, scriptName);
    } catch (err) {
      return false; // node's own stripper reports it, from the file itself
    }
    js = StringPrototypeReplaceAll(js, SITE_VOID, SITE_RETURN);
    ReflectDefineProperty(proto, '_compile', {
      __proto__: null,
      configurable: true,
      get() {
        ReflectDefineProperty(proto, '_compile', own);
        if (this === proto || this.filename !== file) return own.value;
        compiled = true;
        return ReflectApply(bind, own.value, [this, js, file, 'commonjs']);
      },
      set(value) {
        ReflectDefineProperty(proto, '_compile', { __proto__: null, ...own, value });
      },
    });
    return true;
  }

  // The name node's loader gives the file it strips (its path; from node 24 on, its file:
  // URL), asked of node: a one-line module of that name, compiled as the notebook would be.
  function strippedName(compile) {
    const probe = new Module(file, null);
    ReflectApply(compile, probe, ['module.exports = new Error().stack', file, 'commonjs-typescript']);
    const frame = lines(probe.exports)[1];
    const at = StringPrototypeIndexOf(frame, '(') + 1;
    const end = StringPrototypeLastIndexOf(frame, ':1:');
    if (at === 0 || end < at) throw new NativeError('no stack');
    return StringPrototypeSlice(frame, at, end);
  }

  // The edited file's early errors (node reports them before running anything): compiled
  // as node's CommonJS loader compiles a module, then thrown away.
  function check(source, k) {
    if (typescript !== undefined && !compiled && !(esm && typescript === 'strip')) {
      // node transforms TypeScript (enums, namespaces: code moves), or compiled the file
      // itself: no continuation is exact
      send(events.error(k, 'unfit', `TypeScript (${typescript})`, 0));
      die();
    }
    if (esm) return; // tonic had node check it (no module compiles here)
    try {
      compileFunction(stripped(source), WRAPPER_PARAMS, { __proto__: null, filename: plan.file });
    } catch (err) {
      send(events.error(k, 'early', describe(err), 0));
      die();
    }
  }

  // The command answering pause k (after any setup before it).
  function answer(k) {
    let cmd = receive();
    while (commands.isSetup(cmd)) {
      setup(cmd);
      cmd = receive();
    }
    mark = now();
    if (!commands.isEval(cmd)) return false;
    const source = own(cmd, 'check');
    if (typeof source === 'string') check(source, k);
    const free = own(cmd, 'free');
    if (ArrayIsArray(free)) {
      // In sloppy eval'd code, a ReferenceError for one of these would point elsewhere
      // than node's (see tonic/timetravel/continuation/free.py): tonic runs afresh.
      for (let i = 0; i < free.length; i++) {
        if (free[i] in globalObject) continue;
        send(events.error(k, 'unfit', free[i], 0));
        die();
      }
    }
    if (typeof source === 'string') {
      newText = stripped(source);
      send(events.continuing());
    }
    continuation = own(cmd, 'source');
    const values = own(cmd, 'values');
    if (ArrayIsArray(values)) {
      valueCells = newSet();
      for (let i = 0; i < values.length; i++) valueCells[values[i]] = true;
    }
    return true;
  }

  // An ES module's continuation (instrument.py's pause site): the edited rest ran as an
  // async generator's body; once it settled, the module must end as node's would. Its
  // error goes on as the module's own (node reports it as its loader would); at its
  // end, the module's stale rest is skipped by a throw of SKIP, which node hands to
  // process._fatalException, looked up at call time: there, and only for SKIP, it is
  // handled (nothing printed, no exit code) and process._fatalException is node's again.
  const SKIP = Symbol('skip');
  let skipping = false;
  function skip() {
    if (!skipping) {
      skipping = true;
      const fatal = ReflectGetOwnPropertyDescriptor(proc, '_fatalException');
      if (fatal !== undefined && typeof fatal.value === 'function') {
        ReflectDefineProperty(proc, '_fatalException', {
          __proto__: null,
          ...fatal,
          value: { _fatalException(err, fromPromise) {
            if (err !== SKIP) return ReflectApply(fatal.value, this, [err, fromPromise]);
            ReflectDefineProperty(proc, '_fatalException', fatal);
            return true;
          } }._fatalException,
        });
      }
    }
    throw SKIP;
  }
  const skipped = (err) => {
    settled();
    if (err === SKIP) skip();
    throw err;
  };
  // While the edited rest awaits, the module awaits at the site: were the event loop to
  // end then, node would report an unsettled top-level await there, the site's own
  // text (node >= 22). The exit code it would set (13) is set just before, which keeps
  // node from looking (it looks only when no exit code is set), and the kernel warns as
  // node would of the rest's own await, where V8 says its generator waits; the rest
  // settled after all, the code goes again.
  let awaiting = false;
  let armed = false;
  let newText = ''; // the edited file (for the line a warning shows)
  const beforeExit = listener(() => {
    if (!awaiting || proc.exitCode !== undefined) return;
    proc.exitCode = 13;
    if (!armed) prepend(proc, 'exit', listener(() => guarded(warnUnsettled)));
    armed = true;
  });
  const warns = nodeMajor >= 22 &&
    !/(^|\s)--no-warnings(\s|$)/.test(startFlags) && process.env.NODE_NO_WARNINGS !== '1';
  function warnUnsettled() {
    if (!armed || !warns || proc.exitCode !== 13) return;
    const at = waitingAt();
    if (at === null) return;
    const text = lines(newText)[at.lineNumber] || '';
    let under = '';
    for (let i = 0; i < at.columnNumber && i < text.length; i++) under += text[i] === '\t' ? '\t' : ' ';
    const data = ReflectApply(BufferFrom, BufferCtor, [
      `Warning: Detected unsettled top-level await at ${scriptName}:${at.lineNumber + 1}\n` +
      `${text}\n${under}^\n\n\n\n`, 'utf8']);
    writeSync(2, data, 0, data.length);
  }
  // Where the newest edited rest's generator waits ({lineNumber, columnNumber}), asked
  // of V8's inspector (its [[GeneratorLocation]]), or null.
  function waitingAt() {
    const session = new (require('inspector').Session)();
    session.connect();
    try {
      let id = null;
      let at = null;
      session.post('Runtime.evaluate', { expression: '__tonic__.g' }, (err, res) => {
        if (!err && res && res.result) id = res.result.objectId;
      });
      if (id === null) return null;
      session.post('Runtime.getProperties', { objectId: id, ownProperties: true }, (err, res) => {
        const props = (!err && res && res.internalProperties) || [];
        for (let i = 0; i < props.length; i++) {
          if (props[i].name === '[[GeneratorLocation]]') at = props[i].value.value;
        }
      });
      return at;
    } finally {
      session.disconnect();
    }
  }
  function settled() {
    if (!awaiting) return;
    awaiting = false;
    off(proc, 'beforeExit', beforeExit);
    if (armed && proc.exitCode === 13) proc.exitCode = undefined;
    armed = false;
  }

  const tonic = {
    __proto__: null,
    v: NONE,
    m: undefined, // the module's import.meta, for a continued ES module's eval'd rest
    g: undefined, // that rest's generator
    // The pause site's await in a continued ES module: the edited rest's promise.
    e(promise) {
      if (!awaiting) {
        awaiting = true;
        on(proc, 'beforeExit', beforeExit);
      }
      return PromisePrototypeThen(promise, () => {
        settled();
        skip();
      }, skipped);
    },
    // Pause site after cell k: report, then block until tonic says how to go on.
    p(k) {
      if (lost) return false;
      const was = busy;
      busy = true;
      try {
        const ms = now() - mark;
        if (loader === null) loaderFrames();
        const modules = watched ? newModules() : undefined;
        const inspected = inspecting && k in valueCells && tonic.v !== NONE;
        const value = inspected ? show(tonic.v) : undefined;
        const mime = inspected ? rich(tonic.v) : undefined;
        tonic.v = NONE;
        lastCell = k;
        send(events.pause(k, ms, modules, value, watched ? watched.take() : undefined, mime));
        return answer(k);
      } catch (err) {
        lost = true; // a bug of the kernel's: the notebook runs on as in plain node
        return false;
      } finally {
        busy = was;
      }
    },
    // The edited rest of the notebook a resumed run continues with (see tonic/timetravel/continuation/).
    t() {
      let source = continuation;
      continuation = null;
      if (compiled || esm) {
        // its //# sourceURL: the name node's loader gave the file
        const end = StringPrototypeLastIndexOf(source, SOURCE_URL) + SOURCE_URL.length;
        source = StringPrototypeSlice(source, 0, end) + scriptName;
        if (typescript !== undefined) source = stripped(source);
      }
      guarded(callerSite);
      if (sites.length === 1) guarded(mendStacks);
      return source;
    },
  };
  if (plan.sites) {
    // A script's top-level `let` is a binding of the global scope that no object holds.
    const bind = vm.runInThisContext('let __tonic__;\n(value) => { __tonic__ = value; }');
    bind(tonic);
  }

  on(process, 'uncaughtExceptionMonitor', listener((err, origin) => {
    const was = busy;
    busy = true;
    try {
      mendError(err);
      send(events.error(lastCell, origin, describe(err), now() - mark));
    } catch (e) {
      // a bug of the kernel's: node reports the error as it would
    } finally {
      busy = was;
    }
  }));

  const file = plan.file;
  if (esm) {
    // node's ES module loader reads a file: URL, looked up at call time: node 20 with
    // fs.promises.readFile, node >= 22 (a synchronous loader) with fs.readFileSync. It
    // gets the instrumented source without a read of the file (as the CommonJS loader
    // does below): an open of the notebook's file would count as cell 1's.
    const promises = fs.promises;
    const readFile = promises.readFile;
    const readFileSync = fs.readFileSync;
    const isMain = (p) => p instanceof URL && p.href === scriptName;
    const unhook = () => {
      promises.readFile = readFile;
      fs.readFileSync = readFileSync;
    };
    const source = () => {
      unhook();
      mark = now();
      return Buffer.from(plan.source, 'utf8');
    };
    promises.readFile = async function (p, ...rest) {
      return isMain(p) ? source() : readFile.call(this, p, ...rest);
    };
    fs.readFileSync = function (p, ...rest) {
      return isMain(p) ? source() : readFileSync.call(this, p, ...rest);
    };
  } else {
    const readFileSync = fs.readFileSync;
    fs.readFileSync = function (p, ...rest) {
      if (p === file) {
        fs.readFileSync = readFileSync;
        const ours = typescript !== 'strip' || !plan.sites || compileStripped(plan.source);
        mark = now();
        return ours ? plan.source : ReflectApply(readFileSync, this, [p, ...rest]);
      }
      return readFileSync.call(this, p, ...rest);
    };
  }
  send(events.hello(process.pid, plan.kind, plan.typescript ? typescript || '' : undefined));
  // Snapshot runs: tonic answers once it has taken in what node's start-up did, so that
  // what the first cell does is told apart from it.
  if (plan.snapshots) receive();
})();
