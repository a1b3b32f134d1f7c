"""Real log systems on loopback for output forwarding: rsyslog from Debian's packages
(installed with apt-get when missing and the tests run as root, as in CI), listening
on TCP or TLS and writing what it parsed to a file; and an OTLP/HTTP logs receiver
that decodes each request with the opentelemetry-proto package. Both can be stopped
and started again on the same port, to test a log system that goes down."""

from __future__ import annotations

import signal
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.harness import debian_binary, free_port, wait_for

RSYSLOG_PACKAGES = ("rsyslog", "rsyslog-openssl")
# hostname, msgid and structured data as rsyslog parsed them, then the message
TEMPLATE = "%hostname%|%msgid%|%structured-data%|%msg%\\n"


def rsyslogd() -> str:
    """The rsyslogd binary, installed from Debian's packages if it is missing."""
    return debian_binary("rsyslogd", RSYSLOG_PACKAGES, ready=_ossl)


def _ossl() -> bool:
    """Whether rsyslog's OpenSSL stream driver (for TLS) is installed."""
    return (
        any(Path("/usr/lib").glob("*/rsyslog/lmnsd_ossl.so"))
        or Path("/usr/lib/rsyslog/lmnsd_ossl.so").exists()
    )


@dataclass
class Rsyslog:
    """rsyslogd in the foreground, on its own port, configuration and files."""

    root: Path
    tls: tuple[Path, Path, Path] | None = None  # CA, certificate, key
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def out(self) -> Path:
        return self.root / "out.log"

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        work = self.root / "work"
        work.mkdir(parents=True, exist_ok=True)
        lines = [f'global(workDirectory="{work}")']
        if self.tls:
            ca, cert, key = self.tls
            lines.append(
                f'global(defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile="{ca}" '
                f'defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}")'
            )
            lines.append(
                'module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" '
                'streamDriver.authMode="anon")'
            )
        else:
            lines.append('module(load="imtcp")')
        lines += [
            f'input(type="imtcp" address="127.0.0.1" port="{self.port}")',
            f'template(name="fields" type="string" string="{TEMPLATE}")',
            f'action(type="omfile" file="{self.out}" template="fields")',
        ]
        path = self.root / "rsyslog.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Rsyslog:
        binary = rsyslogd()
        config = self._config()
        with open(self.root / "rsyslog.err", "ab") as err:
            self.process = subprocess.Popen(
                [binary, "-n", "-f", str(config), "-i", str(self.root / "rsyslog.pid")],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_for(self._listening, timeout_s=20, what="rsyslog to listen")
        return self

    def _listening(self) -> bool:
        import socket

        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError((self.root / "rsyslog.err").read_text())
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        self.process = None

    def lines(self) -> list[list[str]]:
        """What rsyslog wrote: [hostname, msgid, structured data, message] each."""
        if not self.out.exists():
            return []
        return [line.split("|", 3) for line in self.out.read_text().splitlines()]


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP logs endpoint: each request decoded as an ExportLogsServiceRequest
    (JSON, or protobuf by its content type); `records` are (resource attributes,
    record attributes, body) of every log record received."""

    port: int = field(default_factory=free_port)
    records: list[tuple[dict[str, Any], dict[str, Any], str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/logs"

    def start(self) -> OtlpReceiver:
        from google.protobuf import json_format
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = ExportLogsServiceRequest()
                if self.headers.get("content-type") == "application/x-protobuf":
                    request.ParseFromString(body)
                else:
                    json_format.Parse(body, request)  # strict: unknown fields fail
                for resource_logs in request.resource_logs:
                    resource = _attributes(resource_logs.resource.attributes)
                    for scope_logs in resource_logs.scope_logs:
                        for record in scope_logs.log_records:
                            receiver.records.append(
                                (resource, _attributes(record.attributes), record.body.string_value)
                            )
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        out[pair.key] = getattr(pair.value, kind) if kind else None
    return out
