// http_server.js: a local HTTP server that misbehaves on purpose, for test_data_fetch.
// usage: node http_server.js ROOT -- serves the files of ROOT on 127.0.0.1 at a free port and
// prints the port on stdout. The first path segment picks the behaviour, per file path:
//   /ok/F          Range-capable file server (206 for "Range: bytes=N-", 416 past the end)
//   /missing/F     404
//   /flaky/F       500 for the first two requests, then as /ok
//   /cut/F         the first response stops halfway (socket destroyed), then as /ok
//   /cutnorange/F  as /cut, but later requests ignore Range and send the whole file (200)
//   /stall/F       the first response sends 4 kB and then nothing, then as /ok
//   /slow/F        about 320 kB/s
// It also acts as an HTTP proxy: absolute-URL requests are served the same way and counted.
// GET /stats returns {counts, ranges, maxActive, proxied}; GET /quit exits. It exits by itself
// when its stdin closes (the test ended) or after five minutes.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');

const root = process.argv[2];
let stats = { counts: {}, ranges: {}, maxActive: 0, proxied: 0 };
let active = 0;

function sendFile(req, res, data, mode, n) {
  const total = data.length;
  let start = 0;
  const m = /^bytes=(\d+)-$/.exec(req.headers.range || '');
  const honourRange = !(mode === 'cutnorange' && n > 1);
  if (m && honourRange) {
    start = Number(m[1]);
    if (start >= total) {
      res.writeHead(416, { 'Content-Range': `bytes */${total}` });
      return res.end();
    }
    res.writeHead(206, { 'Content-Length': total - start, 'Content-Range': `bytes ${start}-${total - 1}/${total}` });
  } else {
    res.writeHead(200, { 'Content-Length': total, 'Accept-Ranges': honourRange ? 'bytes' : 'none' });
  }
  const body = data.subarray(start);
  if ((mode === 'cut' || mode === 'cutnorange') && n === 1) {
    res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket.destroy(), 50));
  } else if (mode === 'stall' && n === 1) {
    res.write(body.subarray(0, 4096));        // then nothing until the client gives up
  } else if (mode === 'slow') {
    let off = 0;
    const tick = () => {
      if (res.destroyed) return;
      const chunk = body.subarray(off, off + 16384);
      off += chunk.length;
      if (off >= body.length) return res.end(chunk);
      res.write(chunk);
      setTimeout(tick, 50);
    };
    tick();
  } else {
    res.end(body);
  }
}

const server = http.createServer((req, res) => {
  let url = req.url;
  if (/^https?:\/\//.test(url)) {
    stats.proxied++;
    url = new URL(url).pathname;
  }
  if (url === '/stats') return res.end(JSON.stringify(stats));
  if (url === '/reset') { stats = { counts: {}, ranges: {}, maxActive: 0, proxied: 0 }; return res.end('ok'); }
  if (url === '/quit') { res.end('bye'); return process.exit(0); }
  const [, mode, name] = /^\/([^/]+)\/(.+)$/.exec(url) || [];
  const n = stats.counts[url] = (stats.counts[url] || 0) + 1;
  (stats.ranges[url] = stats.ranges[url] || []).push(req.headers.range || null);
  active++;
  stats.maxActive = Math.max(stats.maxActive, active);
  res.on('close', () => { active--; });
  if (!mode || mode === 'missing') { res.writeHead(404); return res.end('not found'); }
  if (mode === 'flaky' && n <= 2) { res.writeHead(500); return res.end('try again'); }
  let data;
  try {
    data = fs.readFileSync(path.join(root, path.basename(name)));
  } catch (e) {
    res.writeHead(404);
    return res.end('not found');
  }
  sendFile(req, res, data, mode, n);
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
setTimeout(() => process.exit(0), 300000).unref();
