"""The demo's application: GET /hello/<name> answers "Hello <name>, I'm <hostname> !".

A bottle app, as in the original serf-solution demo, served by wsgiref with one thread per
request (the single-threaded default queues connections under load). SIGTERM exits cleanly:
gossip-agent sends it only after the node has left the cluster and traffic has drained.

Each answer leaves in one write. wsgiref's default is an unbuffered socket, on which the status
line, the headers and the body are separate sends; a SIGKILL between the headers and the body
gives nginx a 200 it has already passed on with an empty body, which it cannot retry. Sent
whole, a killed appserver either answered in full or did not answer at all, and nginx asks the
next upstream.
"""
import signal
import socket
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

HOST = socket.gethostname()
app = bottle.Bottle()


@app.get("/hello/<name>")
def hello(name):
    bottle.response.content_type = "text/plain"
    return "Hello %s, I'm %s !\n" % (name, HOST)


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


class QuietHandler(WSGIRequestHandler):
    # Buffered: the whole answer (a few hundred bytes) is flushed by one send.
    wbufsize = 1 << 16

    def log_message(self, *args):
        pass


def stop(*_):
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
make_server("0.0.0.0", 8080, app, server_class=Server, handler_class=QuietHandler).serve_forever()
