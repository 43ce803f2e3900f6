const c = require('net').connect('/tmp/sk/o.sock');
c.on('connect', () => console.log('connected'));

setTimeout(() => { console.log('done'); c.destroy(); }, 301);
