"""Records the vendor requests kycgate makes, so nginx can be driven with the very same ones.

Serves every vendor of `vendors.toml` under its prefix (`/<vendor>/...`), answers with the same
recorded fixture the simulator serves, and writes each vendor's first request to OUT/<vendor>.*:
`.method`, `.path` (with query), `.headers` (one `Name: value` per line) and `.body`.

Usage: python3 capture.py PORT OUT_DIR REPO_DIR
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT, REPO = int(sys.argv[1]), sys.argv[2], sys.argv[3]
FIXTURES = {
    "regula": "providers/fixtures/regula/success.json",
    "kbyai": "providers/fixtures/kbyai/real.json",
    "compreface": "providers/fixtures/compreface/success.json",
}
# Hop-by-hop and per-connection headers are not part of the request nginx is given.
SKIP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def answer(self):
        body = self.body()
        vendor = self.path.lstrip("/").split("/", 1)[0]
        fixture = FIXTURES.get(vendor)
        if fixture is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        base = os.path.join(OUT, vendor)
        if not os.path.exists(base + ".body"):
            with open(base + ".method", "w") as f:
                f.write(self.command)
            with open(base + ".path", "w") as f:
                f.write(self.path)
            with open(base + ".headers", "w") as f:
                for name, value in self.headers.items():
                    if name.lower() not in SKIP:
                        f.write(f"{name}: {value}\n")
            with open(base + ".body", "wb") as f:
                f.write(body)
        with open(os.path.join(REPO, fixture), "rb") as f:
            answer = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_POST = answer
    do_GET = answer


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
