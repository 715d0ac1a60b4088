"""Coverage-guided fuzzing of the chain, in-process, for a bounded time: ``make fuzz``.

``python -m benchmarks.fuzz_chain [--seconds N] [--runs N] [--seed N] [--random]
[CORPUS_DIR ...]``

Each input's bytes are decoded into one request (method, path, query string, headers
with credentials, Content-Length, Transfer-Encoding, body) and a downstream app (the
recorder, the demo, or one that fails), and sent through ``tests.support.chains.CHAIN``
as a WSGI server would send it. Checked for every input (``tests/support/properties.py``,
the same properties as tests/test_hostile.py): nothing escapes the outermost filter
(but the designed mid-body abort), the status and headers are valid HTTP, every error
is our fault format, no credential appears in a log record or in the response, the
app never reads more than sizelimit's ``max_request_body_size``.

With atheris (``pip install atheris``), libFuzzer mutates the inputs, guided by the
coverage of the Python code, for ``--seconds`` (``-max_total_time``); a failing input
is written as ``crash-<sha1>`` in the working directory. Without it, or with
``--random``, a seeded random loop runs for ``--seconds`` or ``--runs``, whichever
ends first, and prints the failing input in hex. Exit status 1 on a failure.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from middleware_kit._wsgi import Environ, WSGIApp
from tests.support.chains import MAX_REQUEST_BODY_SIZE, names
from tests.support.properties import (
    KNOWN_HEADERS,
    METHODS,
    SECRET_HEADERS,
    SECRET_PREFIX,
    Outcome,
    Recorder,
    assert_answer,
    assert_no_credential_leaks,
    call_downstream,
    downstream_chains,
    server_input,
)

DEFAULT_SECONDS = 60.0
MAX_INPUT_BYTES = 4096
PATHS = ("/", "/cats", "/cats/1", "/whoami", "/boom", "/dogs", "//cats", "/dogs/../cats")
LENGTHS = ("", "-1", "0", "5", "99999999999999999999", "abc", " 5", "5, 5", "0x10")
ENCODINGS = ("chunked", "gzip, chunked", "identity", "x")


class Reader:
    """Draws values from the fuzzer's bytes; past the end everything is zero."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def text(self, max_len: int) -> str:
        """Latin-1 decoded bytes, as PEP 3333 gives a server's raw bytes to the app."""
        return self.take(self.byte() % (max_len + 1)).decode("latin-1")

    def pick(self, choices: Sequence[str], other_len: int) -> str:
        """One of ``choices``, or (one time in four) arbitrary text."""
        index = self.byte()
        if index % 4 == 3:
            return self.text(other_len)
        return choices[index % len(choices)]


def decode(data: bytes, downstream: Sequence[str]) -> tuple[str, Environ, list[str]]:
    """(downstream app name, environ, credentials it carries) for one input."""
    reader = Reader(data)
    app = downstream[reader.byte() % len(downstream)]
    path = reader.pick(PATHS, 200)
    if reader.byte() % 16 == 0:
        path += "a" * (reader.byte() * 64)  # up to 16 KiB
    environ: Environ = {
        "REQUEST_METHOD": reader.pick(METHODS, 12),
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": reader.text(60),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    credentials: list[str] = []
    if reader.byte() % 2:  # a token as noauth reads it: <user>:<project>, anything really
        environ["HTTP_X_AUTH_TOKEN"] = reader.text(30)
    for _ in range(reader.byte() % 10):
        kind = reader.byte() % 3
        if kind == 0:  # a credential header
            name = SECRET_HEADERS[reader.byte() % len(SECRET_HEADERS)]
            value = SECRET_PREFIX + reader.take(12).hex()
            credentials.append(value)
        else:
            name = reader.pick(KNOWN_HEADERS, 20)
            value = reader.text(80)
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            key = key[5:]
        environ[key] = f"{environ[key]},{value}" if key in environ else value  # duplicates
    if reader.byte() % 2:
        environ["CONTENT_LENGTH"] = reader.pick(LENGTHS, 24)
    if reader.byte() % 4 == 0:
        environ["HTTP_TRANSFER_ENCODING"] = reader.pick(ENCODINGS, 24)
    environ["wsgi.input"] = server_input(environ, data[reader.pos :])
    return app, environ, credentials


class Captured(logging.Handler):
    """Every record, formatted with its traceback, for the leak check."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(self.format(record) + repr(record.__dict__))


class Target:
    """The chains, the log capture, and the check of one input."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.chains: dict[str, WSGIApp] = downstream_chains(self.recorder)
        self.names = sorted(self.chains)
        self.log = Captured()
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.log)
        root.setLevel(logging.DEBUG)

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.log)
        root.setLevel(self.level)

    def __call__(self, data: bytes) -> None:
        name, environ, credentials = decode(data[:MAX_INPUT_BYTES], self.names)
        self.log.text.clear()
        self.recorder.body_bytes = 0
        sent = dict(environ)
        outcome = call_downstream(self.chains, name, environ)
        if outcome is None:  # the one designed escape, for the server to abort
            outcome = Outcome("", [], b"")
        else:
            assert_answer(name, outcome, sent)
        assert_no_credential_leaks(credentials, outcome, "".join(self.log.text))
        if "sizelimit" in names():  # the app never reads past the limit
            assert self.recorder.body_bytes <= MAX_REQUEST_BODY_SIZE


def run_random(target: Target, seconds: float, runs: int, seed: int) -> int:
    """The bounded random loop; returns the number of inputs tried."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    done = 0
    while done < runs and time.monotonic() < deadline:
        data = rng.randbytes(rng.randrange(MAX_INPUT_BYTES))
        try:
            target(data)
        except Exception:
            print(f"failing input ({len(data)} bytes): {data.hex()}", file=sys.stderr)
            raise
        done += 1
    return done


def run_atheris(
    atheris: Any, target: Target, seconds: float, runs: int, corpus: Sequence[str]
) -> None:
    atheris.instrument_all()
    args = [sys.argv[0], f"-max_total_time={int(seconds)}", f"-max_len={MAX_INPUT_BYTES}"]
    if runs:
        args.append(f"-runs={runs}")
    atheris.Setup([*args, *corpus], target)
    atheris.Fuzz()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_chain")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--runs", type=int, default=0, help="at most this many inputs")
    parser.add_argument("--seed", type=int, default=0, help="random loop only")
    parser.add_argument("--random", action="store_true", help="the random loop even with atheris")
    parser.add_argument("corpus", nargs="*", help="libFuzzer corpus directories (atheris)")
    args = parser.parse_args(argv)
    try:
        import atheris
    except ImportError:
        atheris = None
        print("atheris is not installed: bounded random loop", file=sys.stderr)
    logging.getLogger().handlers.clear()  # the filters' error records are expected noise
    target = Target()
    if atheris is not None and not args.random:
        run_atheris(atheris, target, args.seconds, args.runs, args.corpus)
        return 0
    started = time.monotonic()
    done = run_random(target, args.seconds, args.runs or sys.maxsize, args.seed)
    elapsed = time.monotonic() - started
    print(f"{done} inputs in {elapsed:.1f} s, no property broken (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
