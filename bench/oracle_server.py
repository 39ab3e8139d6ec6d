#!/usr/bin/env python3
# bench/oracle_server.py REPLY_FILE [PORT]: an OpenAI-compatible chat server playing the oracle
# model on the GPU machine (which reaches no hosted API): every POST .../chat/completions gets
# REPLY_FILE's text as the assistant's message (the SEARCH/REPLACE blocks that turn record N's
# recipe into record N+1's, written by bench/oracle_reply.lua), with token counts estimated as
# len(text) / 4 so the run's token and cost budgets have something real to count. Prints the port
# (0 = a free one) on its first line, then serves until killed. Standard library only.
import http.server, json, sys

REPLY = open(sys.argv[1], encoding="utf-8").read()


class Oracle(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        try:
            req = json.loads(body)
        except ValueError:
            return self.send(400, {"error": {"message": "the request body is not JSON"}})
        if not self.path.endswith("/chat/completions"):
            return self.send(404, {"error": {"message": "no such endpoint: " + self.path}})
        prompt = sum(len(str(m.get("content", ""))) for m in req.get("messages", [])) // 4
        done = len(REPLY) // 4
        self.send(200, {
            "id": "chatcmpl-oracle", "object": "chat.completion", "created": 0,
            "model": req.get("model", "oracle"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": REPLY}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}})

    def send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("oracle_server: " + fmt % args + "\n")


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0), Oracle)
print(server.server_address[1], flush=True)
server.serve_forever()
