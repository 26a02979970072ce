"""A stand-in for a Windows WinRM listener (there is no Windows server in the lab): an HTTP server that
answers every request with 401 and ``WWW-Authenticate: Negotiate`` / ``NTLM``, as an unauthenticated
request to a Windows ``/wsman`` endpoint is answered. Only the client's side of the capture is real WinRM.

    /usr/bin/python3 tests/traffic_lab/winrm_standin.py ADDRESS PORT
"""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Wsman(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def _refuse(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(401)
        self.send_header("WWW-Authenticate", "Negotiate")
        self.send_header("WWW-Authenticate", "NTLM")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = _refuse

    def log_message(self, *args) -> None:
        pass


def main() -> int:
    HTTPServer((sys.argv[1], int(sys.argv[2])), Wsman).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
