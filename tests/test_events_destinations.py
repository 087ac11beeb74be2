"""The SSRF guard of webhook URLs: https only (http where configured), no credentials, no
numeric tricks, and every resolved address public unless allowlisted."""

from __future__ import annotations

import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from app.events.destinations import Destination, DestinationRefused, parse_networks, post, resolve


def _resolve(url, *, allow_http=False, allowed="", resolver=None):
    extra = {"resolver": resolver} if resolver else {}
    return resolve(url, allow_http=allow_http, allowed_networks=parse_networks(allowed), **extra)


def _public(_host, _port):
    return ["93.184.216.34"]


@pytest.mark.parametrize(("url", "reason"), [
    ("https://localhost/hooks", "loopback"),
    ("https://127.0.0.1/hooks", "loopback"),
    ("https://[::1]/hooks", "loopback"),
    ("https://[::ffff:127.0.0.1]/hooks", "loopback"),
    ("https://169.254.169.254/latest/meta-data", "metadata"),
    ("https://[fd00:ec2::254]/latest", "metadata"),
    ("https://10.1.2.3/hooks", "private"),
    ("https://192.168.0.10/hooks", "private"),
    ("https://169.254.10.10/hooks", "link-local"),
    ("https://0.0.0.0/hooks", "unspecified"),
    ("https://224.0.0.1/hooks", "multicast"),
])
def test_addresses_inside_the_hospital_network_or_the_host_are_refused(url, reason):
    with pytest.raises(DestinationRefused, match=reason):
        _resolve(url)


@pytest.mark.parametrize("url", ["https://2130706433/", "https://0x7f000001/",
                                 "https://0x7f.1/", "https://017700000001/",
                                 "https://127.1/"])
def test_numeric_hosts_in_other_forms_than_the_dotted_quad_are_refused(url):
    with pytest.raises(DestinationRefused, match="number"):
        _resolve(url, resolver=_public)


def test_the_decimal_loopback_trick_over_http_is_refused_even_where_http_is_allowed():
    with pytest.raises(DestinationRefused):
        _resolve("http://2130706433/", allow_http=True)


def test_plain_http_is_refused_unless_the_setting_allows_it():
    with pytest.raises(DestinationRefused, match="https"):
        _resolve("http://receiver.example/hooks", resolver=_public)
    assert _resolve("http://receiver.example/hooks", allow_http=True,
                    resolver=_public).address == "93.184.216.34"


@pytest.mark.parametrize("url", ["ftp://receiver.example/", "https://user:pw@receiver.example/",
                                 "https:///hooks", "https://receiver.example:99999/",
                                 "https://receiver.example/#part", "https://rece iver.example/",
                                 "https://réceiver.example/"])
def test_urls_of_other_shapes_are_refused(url):
    with pytest.raises(DestinationRefused):
        _resolve(url, resolver=_public)


def test_a_name_with_one_private_address_among_public_ones_is_refused():
    with pytest.raises(DestinationRefused, match="private"):
        _resolve("https://receiver.example/", resolver=lambda _h, _p: ["93.184.216.34",
                                                                         "10.0.0.5"])


def test_a_name_that_does_not_resolve_is_refused():
    def nowhere(_host, _port):
        raise OSError("no such name")

    with pytest.raises(DestinationRefused, match="does not resolve"):
        _resolve("https://receiver.example/", resolver=nowhere)


def test_an_allowlisted_network_is_accepted_and_nothing_else_near_it():
    destination = _resolve("http://127.0.0.2:8080/hooks?x=1", allow_http=True,
                           allowed="127.0.0.2/32")
    assert (destination.address, destination.port, destination.target,
            destination.host_header) == ("127.0.0.2", 8080, "/hooks?x=1", "127.0.0.2:8080")
    with pytest.raises(DestinationRefused, match="loopback"):
        _resolve("http://127.0.0.1:8080/hooks", allow_http=True, allowed="127.0.0.2/32")


def test_the_delivery_connects_to_the_checked_address_under_the_hosts_name():
    destination = _resolve("https://receiver.example/hooks", resolver=_public)
    assert (destination.address, destination.host, destination.host_header) == (
        "93.184.216.34", "receiver.example", "receiver.example")


def test_a_malformed_allowlist_is_an_error():
    with pytest.raises(ValueError, match="HUB_WEBHOOK_ALLOWED_NETWORKS"):
        parse_networks("10.0.0.0/8, not-a-network")


@pytest.fixture
def tls_receiver(tmp_path):
    """An https receiver on 127.0.0.2 with a self-signed certificate for ``receiver.test``;
    records the TLS server name (SNI) and Host header each request came with."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=receiver.test", "-addext", "subjectAltName=DNS:receiver.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    seen: list[tuple[str | None, str | None]] = []
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _socket, name, _context: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((names[-1] if names else None, self.headers.get("Host")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"port": server.server_address[1], "cert": cert, "seen": seen}
    server.shutdown()
    server.server_close()


def _to_receiver(port: int) -> Destination:
    # As resolve() makes it for https://receiver.test:<port>/hooks resolving to 127.0.0.2.
    return Destination(scheme="https", host="receiver.test", port=port, target="/hooks",
                       address="127.0.0.2")


def test_https_goes_to_the_checked_address_with_the_name_as_sni_and_host(tls_receiver,
                                                                         monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_receiver["cert"]))  # trust it, as a CA
    answer = post(_to_receiver(tls_receiver["port"]), body=b"{}", headers={}, timeout=5)
    assert answer.status == 204
    assert tls_receiver["seen"] == [("receiver.test", f"receiver.test:{tls_receiver['port']}")]


def test_an_untrusted_certificate_fails_the_delivery(tls_receiver):
    with pytest.raises(urllib3.exceptions.SSLError):
        post(_to_receiver(tls_receiver["port"]), body=b"{}", headers={}, timeout=5)
    assert tls_receiver["seen"] == []


def test_a_certificate_for_another_name_fails_the_delivery(tls_receiver, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_receiver["cert"]))
    elsewhere = Destination(scheme="https", host="elsewhere.test", port=tls_receiver["port"],
                            target="/hooks", address="127.0.0.2")
    with pytest.raises(urllib3.exceptions.SSLError):
        post(elsewhere, body=b"{}", headers={}, timeout=5)
    assert tls_receiver["seen"] == []
