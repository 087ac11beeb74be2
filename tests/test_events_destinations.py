"""The SSRF guard of webhook URLs: https only (http where configured), no credentials, no
numeric tricks, and every resolved address public unless allowlisted."""

from __future__ import annotations

import pytest

from app.events.destinations import DestinationRefused, parse_networks, resolve


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
