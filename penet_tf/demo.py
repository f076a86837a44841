"""Serve the in-browser inpainting demo (demos/web) with a converted TF.js model.

    python -m penet_tf.convert --saved-model savedmodels/demo/1 --to tfjs --out converted/tfjs
    python -m penet_tf.demo --model converted/tfjs          # http://127.0.0.1:8000/

serves, on 127.0.0.1 unless ``--host`` names another address:

* ``/``: the static page in ``demos/web`` (index.html, app.js, style.css) and its
  ``node_modules`` (TensorFlow.js and the wasm backend, installed by ``npm ci``);
* ``/model/``: the directory given by ``--model`` (``model.json`` + weight shards).

The responses carry ``Cross-Origin-Opener-Policy``/``Cross-Origin-Embedder-Policy``
headers, so the page is cross-origin isolated and TF.js may use its multi-threaded wasm
build. ``--port 0`` picks a free port; the URL is printed on the first line of output.
"""

import argparse
import errno
import functools
import http.server
import json
import os
import posixpath
import socket
import sys
import urllib.parse

from penet_tf.cli import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB_ROOT = os.path.join(REPO, "demos", "web")
TFJS_BUNDLE = os.path.join("node_modules", "@tensorflow", "tfjs", "dist", "tf.min.js")
WASM_BUNDLE = os.path.join(
    "node_modules", "@tensorflow", "tfjs-backend-wasm", "dist", "tf-backend-wasm.min.js"
)


class DemoHandler(http.server.SimpleHTTPRequestHandler):
    """Static files from the web root, ``/model/...`` from the model directory."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
        ".bin": "application/octet-stream",
    }

    def __init__(self, *args, model_dir, web_root, quiet=True, **kwargs):
        self.model_dir = model_dir
        self.quiet = quiet
        super().__init__(*args, directory=web_root, **kwargs)

    def send_head(self):
        # A NUL byte in the path ("/app.js%00") or a lone surrogate ("/%ed%a0%80", as the
        # base class unquotes it) made open() raise: the connection was dropped and a
        # traceback printed, even without --verbose.
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path, errors="surrogatepass")
        if not _openable(path):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def translate_path(self, path):
        parsed = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if parsed == "/model" or parsed.startswith("/model/"):
            relative = posixpath.normpath(parsed[len("/model") :]).lstrip("/")
            parts = [part for part in relative.split("/") if part not in ("", ".", "..")]
            target = os.path.join(self.model_dir, *parts)
            # A link in the model folder to a file outside it (/etc/passwd) was served.
            if not _inside(self.model_dir, target):
                return ""  # (not found)
            return target
        target = super().translate_path(path)
        # A link in the page's folder to a file or folder outside it was served too.
        return target if _inside(self.directory, target) else ""

    def list_directory(self, path):
        # Folders were listed (/model/, /node_modules/, /tests/): the page needs none.
        self.send_error(404, "File not found")
        return None

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        if not self.quiet:
            super().log_message(format, *args)


def _openable(path):
    """Whether ``open()`` can take ``path`` (no NUL byte, no lone surrogate)."""
    if "\x00" in path:
        return False
    try:
        os.fsencode(path)
    except UnicodeError:
        return False
    return True


def _inside(root, path):
    """Whether ``path``, links followed, lies in the folder ``root``."""
    root, real = os.path.realpath(root), os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def _check_model_files(model_dir):
    """Raises FileNotFoundError unless model.json and every weight file it names are
    files the server gives out (inside ``model_dir``, links followed): the page opened,
    then failed on a 404 for a shard that was missing or a link out of the folder."""
    model_json = os.path.join(model_dir, "model.json")
    files = [model_json]
    try:
        with open(model_json, encoding="utf-8") as handle:
            manifest = json.load(handle).get("weightsManifest", [])
        files += [
            os.path.join(model_dir, *name.split("/"))
            for group in manifest
            for name in group.get("paths", [])
        ]
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise FileNotFoundError(
            f"{model_json} is not a TF.js model.json ({error}): convert the model again"
        ) from None
    for path in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path}, which {model_json} names, is missing: convert the model again"
            )
        if not _inside(model_dir, path):
            raise FileNotFoundError(
                f"{path} links to {os.path.realpath(path)}, outside {model_dir}: the demo "
                "serves only files inside --model; copy them in (or link the whole folder)"
            )


def check_layout(model_dir, web_root):
    """Raises FileNotFoundError, saying how to fix it, when something the page needs is missing."""
    if os.path.isfile(model_dir):  # (said "No model.json in .../model.json")
        raise FileNotFoundError(
            f"--model {model_dir} is a file: give the folder that holds model.json"
        )
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"--model {model_dir} does not exist")
    if not os.path.isfile(os.path.join(model_dir, "model.json")):
        raise FileNotFoundError(
            f"No model.json in {model_dir}: convert a model first, e.g. `python -m "
            "penet_tf.convert --saved-model savedmodels/NAME/1 --to tfjs --out converted/tfjs`."
        )
    _check_model_files(model_dir)
    if not os.path.isfile(os.path.join(web_root, "index.html")):
        raise FileNotFoundError(
            f"No index.html in {web_root} (the demo page): the page is in penet_tf's source "
            "checkout, not in the installed package; pass --web-root CHECKOUT/demos/web "
            "(after `npm ci` there)."
        )
    for bundle in (TFJS_BUNDLE, WASM_BUNDLE):
        path = os.path.join(web_root, bundle)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} is missing: run `npm ci` in {web_root} "
                "(or scripts/setup_browser_tests.sh)."
            )
        if not _inside(web_root, path):  # (the server gives out nothing outside it)
            raise FileNotFoundError(
                f"{path} links to {os.path.realpath(path)}, outside {web_root}: the demo "
                f"serves only files inside --web-root; run `npm ci` in {web_root}"
            )


class DemoServer(http.server.ThreadingHTTPServer):
    """The demo's ``ThreadingHTTPServer``: a backlog for a page's burst of requests (the
    default 5 kept some of 20 waiting 1 s, of 200 up to 28 s), and a browser that goes away
    mid-download (a reload while the shards load) is not a printed traceback."""

    request_queue_size = 128

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_server(model_dir, host="127.0.0.1", port=8000, web_root=WEB_ROOT, quiet=True):
    """A ``DemoServer`` for the demo (not started); ``server.server_port`` is its port.
    ``host`` may be an IPv6 address in brackets, as URLs (and this server) write it."""
    model_dir, web_root = os.path.abspath(model_dir), os.path.abspath(web_root)
    check_layout(model_dir, web_root)
    handler = functools.partial(DemoHandler, model_dir=model_dir, web_root=web_root, quiet=quiet)
    if len(host) > 2 and host.startswith("[") and host.endswith("]"):  # ("[]": every address)
        host = host[1:-1]
    try:
        return _server_class(host)((host, port), handler)
    except socket.gaierror as error:  # (was "[Errno -2] Name or service not known")
        raise OSError(
            f"--host {host}: not a host name or address ({error.strerror}); give one alone, "
            "without a scheme or port (127.0.0.1, 0.0.0.0 for every address, ::1)"
        ) from None
    except OSError as error:
        if error.errno != errno.EADDRNOTAVAIL:
            raise
        raise OSError(  # (was "[Errno 99] Cannot assign requested address")
            f"--host {host}: not an address of this machine; use 127.0.0.1 (this machine "
            "only), 0.0.0.0 (every address) or one of its own"
        ) from None


def _server_class(host):
    """``DemoServer`` for an IPv4 address or name, its IPv6 twin for an IPv6 one
    (``--host ::1`` was refused: "Address family for hostname not supported")."""
    try:
        family = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    except (OSError, UnicodeError):
        return DemoServer  # (its bind reports the bad name)
    if family != socket.AF_INET6:
        return DemoServer
    return type("DemoServerV6", (DemoServer,), {"address_family": family})


def _port(text):
    """argparse type: a TCP port, 0-65535 (70000 ended in an OverflowError traceback)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535; 0 = any free)")
    return port


def _main(argv):
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.demo",
        description="Serve the in-browser PEN-Net demo with a converted TF.js model.",
    )
    parser.add_argument(
        "--model", required=True, help="directory with model.json (python -m penet_tf.convert)"
    )
    parser.add_argument(
        "--port", type=_port, default=8000, help="port (default 8000; 0 = any free)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument(
        "--web-root",
        default=WEB_ROOT,
        help=f"the page: a source checkout's demos/web (default {WEB_ROOT})",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.model, args.host, args.port, args.web_root, not args.verbose)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        raise OSError(
            f"port {args.port} on {args.host} is in use: choose another with --port (0 = "
            "any free one)"
        ) from None
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host  # (an IPv6 address, as URLs write it)
    print(f"PEN-Net demo: http://{host}:{port}/  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv=None):
    """The CLI; returns the exit status (errors: one line on stderr, no traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
