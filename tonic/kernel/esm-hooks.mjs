// Module hooks for an ES module notebook: serve the instrumented source of the main file
// once; everything else loads as node would load it.
let main = null;

export async function initialize(data) {
  main = data;
}

export async function load(url, context, next) {
  if (main !== null && url === main.url) {
    const { source } = main;
    main = null;
    return { format: 'module', source, shortCircuit: true };
  }
  return next(url, context);
}
