"""HTTP trigger on 127.0.0.1: route parameters and constraints, query, body, status and errors."""

from __future__ import annotations

import json

from tests.host.conftest import call


def test_route_params_query_body_and_errors(app_dir, start_host):
    host = start_host(app_dir, "http_items")
    assert host.url.startswith("http://127.0.0.1:")

    status, headers, body = call(f"{host.url}/api/items/42/widget?colour=red", headers={"X-Test": "yes"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    got = json.loads(body)
    assert got["route"] == {"id": "42", "name": "widget"}
    assert got["query"] == {"colour": "red"} and got["header"] == "yes" and got["method"] == "GET"
    assert got["url"] == f"{host.url}/api/items/42/widget?colour=red"

    status, _, body = call(f"{host.url}/api/items/7", method="POST", body=b"payload")
    assert status == 201
    assert json.loads(body)["route"] == {"id": "7"} and json.loads(body)["body"] == "payload"

    assert call(f"{host.url}/api/items/not-a-number")[0] == 404  # {id:int} constraint
    assert call(f"{host.url}/api/items/1", method="DELETE")[0] == 405
    assert call(f"{host.url}/api/items/1?boom=1")[0] == 500
    status, _, body = call(f"{host.url}/admin/host/status")
    assert status == 200 and json.loads(body)["state"] == "Running"


def test_routes_match_like_the_functions_host(app_dir, start_host):
    host = start_host(app_dir, "http_items", "http_any")
    # Literal segments ignore case and a trailing slash, as ASP.NET routing in the host does.
    for path in ("/api/HttpGet", "/api/httpget", "/API/HTTPGET/", "/api/httpget/"):
        status, _, body = call(f"{host.url}{path}")
        assert (status, body) == (200, b"GET {}"), path
    status, _, body = call(f"{host.url}/api/ITEMS/3/Blue/")
    assert status == 200 and json.loads(body)["route"] == {"id": "3", "name": "Blue"}
    # A route without `methods` takes every method, HEAD included; one with methods refuses the rest.
    status, headers, body = call(f"{host.url}/api/httpget", method="HEAD")
    assert (status, headers["X-Method"], body) == (200, "HEAD", b"")
    assert call(f"{host.url}/api/httpget", method="PATCH")[0] == 200
    status, headers, _ = call(f"{host.url}/api/items/1", method="HEAD")
    assert status == 405 and headers["Allow"] == "GET, POST"
    assert call(f"{host.url}/api/nothing-here")[0] == 404
