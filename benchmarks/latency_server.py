"""A cover server with added latency, run in its own process by ``bench_e2e``.

``python -m benchmarks.latency_server DIR --delay 0.05`` serves the files of DIR at
``/<creator>/<name>`` (the creator part is ignored, so every creator can have its
own URLs) after sleeping ``--delay`` seconds per request, and prints its port on
the first line of stdout. Its own process, so its CPU is not charged to imgpipe.
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(folder: Path, delay: float) -> None:
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a CDN would

        def do_GET(self) -> None:
            time.sleep(delay)
            body = files.get(self.path.rsplit("/", 1)[-1])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # the default backlog of 5 drops bursts of new connections

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args(argv)
    serve(args.folder, args.delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
