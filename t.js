const c = require('net').connect(47311, '127.0.0.1');
c.on('connect', () => console.log('connected'));

setTimeout(() => { console.log('done'); c.destroy(); }, 300);
