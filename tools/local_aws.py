"""A local AWS endpoint (moto) for DynamoDB, SQS and Secrets Manager.

Serves on 127.0.0.1, prints one line `READY http://127.0.0.1:<port>` when it
accepts requests, and stops when its standard input closes, so a test run or
`make local` that started it can never leave it behind.

Usage: local_aws.py [--port N]   (0, the default, picks a free port)

Requests are handled one at a time: DynamoDB makes each conditional write
atomic, and moto only does when it isn't interleaved with another request.
"""

import argparse
import logging
import sys
import threading

from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


class OneAtATime:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Materialise the body inside the lock: moto may build it lazily.
            return list(self.app(environ, start_response))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args()
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = OneAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"READY http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
    except KeyboardInterrupt:
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
