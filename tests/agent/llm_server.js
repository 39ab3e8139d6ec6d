// llm_server.js: a scripted OpenAI-compatible server for tests/agent (speedrun.http, speedrun.agent.llm).
// usage: node llm_server.js [PARENT_PID] -- listens on 127.0.0.1 at a free port and prints the port on
// stdout. It exits when PARENT_PID is gone, on GET /__quit, or after five minutes.
//
// Scripts are kept per id, so each test case has its own: POST /__script/ID with
//   {"steps": [STEP, ...], "then": STEP}
// and then every request to /ID/... (e.g. base URL http://127.0.0.1:PORT/ID/v1, so
// POST /ID/v1/chat/completions) takes the next step; once the steps are used up, `then` answers
// (default: {"reply": "ok"}). Requests to paths without a scripted id use the id "default".
// A STEP is one of
//   {"reply": "text", "usage": {...}, "finish_reason": "stop"}  an OpenAI chat.completion
//   {"echo": true}                  a chat.completion whose content is the last message's content
//   {"status": 429, "headers": {"Retry-After": "1"}, "body": "slow down"}  a raw response
//   {"json": {...}, "status": 200}  any JSON body (no choices, null content, ...)
//   {"stall": true}                 accepts the request and never answers
//   {"hangup": true}                closes the connection without an answer
//   {"match": [["text", STEP], ...], "else": STEP}  the first STEP whose text occurs in one of the
//                                   request's messages (an oracle per task: "# Task 2:"), else `else`
// Requests in a proxy's absolute form (GET http://host/ID/...) are answered the same way.
// GET /__requests/ID returns what ID's requests were: [{method, path, headers, body, bytes}, ...]
// (header names lowercase, body as text, bytes its length in bytes).
'use strict';
const http = require('http');

const scripts = {};   // id -> {steps, then, next, requests}

function script(id) {
  if (!scripts[id]) scripts[id] = { steps: [], then: { reply: 'ok' }, next: 0, requests: [] };
  return scripts[id];
}

function completion(req, step, content) {
  let model = 'unknown';
  try { model = JSON.parse(req.bodyText).model || model; } catch (e) { /* not JSON: keep unknown */ }
  return {
    id: 'chatcmpl-test', object: 'chat.completion', created: 0, model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: step.finish_reason || 'stop' }],
    usage: step.usage || { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  };
}

function lastMessage(req) {
  try {
    const m = JSON.parse(req.bodyText).messages;
    return m[m.length - 1].content;
  } catch (e) {
    return '';
  }
}

function allMessages(req) {
  try {
    return JSON.parse(req.bodyText).messages.map((m) => String(m.content)).join('\n');
  } catch (e) {
    return '';
  }
}

function answer(req, res, step) {
  if (step.match) {
    const text = allMessages(req);
    const hit = step.match.find((pair) => text.includes(pair[0]));
    return answer(req, res, hit ? hit[1] : (step.else || { reply: 'ok' }));
  }
  if (step.stall) {
    setTimeout(() => res.socket && res.socket.destroy(), 60000).unref();
    return;
  }
  if (step.hangup) return req.socket.destroy();
  let body = step.body;
  const headers = Object.assign({}, step.headers || {});
  if (step.reply !== undefined || step.echo) body = completion(req, step, step.echo ? lastMessage(req) : step.reply);
  else if (step.json !== undefined) body = step.json;
  if (typeof body !== 'string') {
    body = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  res.writeHead(step.status || 200, headers);
  res.end(body || '');
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    req.bodyText = Buffer.concat(chunks).toString('utf8');
    let m;
    if (req.url === '/__quit') { res.end('bye'); return process.exit(0); }
    if ((m = /^\/__script\/([^/]+)$/.exec(req.url)) && req.method === 'POST') {
      const s = JSON.parse(req.bodyText);
      scripts[m[1]] = { steps: s.steps || [], then: s.then || { reply: 'ok' }, next: 0, requests: [] };
      return res.end('{}');
    }
    if ((m = /^\/__requests\/([^/]+)$/.exec(req.url))) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify(script(m[1]).requests));
    }
    // an absolute URL: a request sent to this server as a proxy; its path picks the script
    const where = /^https?:\/\//.test(req.url) ? new URL(req.url).pathname : req.url;
    const first = (/^\/([^/?]+)/.exec(where) || [])[1];
    const s = scripts[first] ? scripts[first] : script('default');
    s.requests.push({ method: req.method, path: req.url, headers: req.headers, body: req.bodyText, bytes: Buffer.concat(chunks).length });
    const step = s.next < s.steps.length ? s.steps[s.next++] : s.then;
    answer(req, res, step);
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});

const parent = Number(process.argv[2] || 0);
setInterval(() => {
  if (!parent) return;
  try { process.kill(parent, 0); } catch (e) { process.exit(0); }
}, 500).unref();
setTimeout(() => process.exit(0), 300000).unref();
