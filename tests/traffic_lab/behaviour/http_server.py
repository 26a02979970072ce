"""The lab's web server (Python's http.server, threaded): what the web VMs serve and what the internet
namespace answers on every one of its addresses.

    GET /obj/<bytes>[/<anything>]   that many bytes (pages, images, artefacts)
    POST|PUT /<anything>            the body is read and dropped; a short answer (uploads, beacons)
    any other GET                   a small page

    python3 http_server.py ADDRESS PORT
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOCK = bytes(range(256)) * 4096  # 1 MiB written again and again
MAX_BODY = 1 << 31


class Handler(BaseHTTPRequestHandler):
    server_version = "nginx/1.22.1"  # what the lab's "sites" say they are; the body is http.server's
    sys_version = ""
    timeout = 60

    def log_message(self, *args) -> None:  # no log: thousands of requests a minute
        pass

    def do_GET(self) -> None:
        parts = self.path.split("/")
        size = int(parts[2]) if len(parts) > 2 and parts[1] == "obj" and parts[2].isdigit() else 512
        size = min(size, MAX_BODY)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream" if size > 65536 else "text/html")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        left = size
        while left > 0:
            chunk = BLOCK[: min(left, len(BLOCK))]
            self.wfile.write(chunk)
            left -= len(chunk)

    def do_POST(self) -> None:
        left = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    Server((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
