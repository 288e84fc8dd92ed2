"""A small HTTP server for ADD <URL> tests: serves a directory (with
Last-Modified and Content-Length, as http.server does) plus a few misbehaving
paths. Usage: http_fixture.py PORT DIR. Prints "ready" once listening.

  /loop   redirects to itself forever
  /short  promises 1000 bytes, sends 10 and closes the connection
  /slow   sends 10 bytes, then nothing for 60 s (a download to cancel)
  /v2/... never answers (a registry whose pull hangs)

Each request is logged as "PATH STATUS" to DIR/.access.log.
"""

import http.server
import os
import sys
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/v2/"):
            time.sleep(600)
            return
        if self.path in ("/short", "/slow"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            if self.path == "/slow":
                time.sleep(60)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass

    def log_request(self, code="-", size="-"):
        # "PATH STATUS" per request, for tests to see revalidations (304).
        with open(os.path.join(ROOT, ".access.log"), "a") as log:
            log.write(f"{getattr(self, 'path', '-')} {int(code) if str(code).isdigit() else code}\n")


ROOT = "."


def main():
    global ROOT
    port, root = int(sys.argv[1]), sys.argv[2]
    ROOT = os.path.abspath(root)
    os.chdir(root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
