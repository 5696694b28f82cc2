"""Every route of the table answers, with and without a trailing slash, the same."""

from __future__ import annotations

import pytest

from coursebook.routes import ROUTES, Route
from tests.support import Api, Demo


@pytest.mark.parametrize("route", list(ROUTES), ids=lambda r: r.name)
def test_every_route_answers_with_and_without_a_trailing_slash(
    api: Api, demo: Demo, route: Route
) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    path = route.url_path_for(**dict.fromkeys(route.convertors, session_id))
    token = demo.manifest["tokens"]["admin"]
    plain = api.get(path, token)
    slashed = api.get(path + "/", token)
    assert plain.status_code == 200, plain.text
    assert slashed.status_code == 200, slashed.text
    assert slashed.headers["content-type"] == plain.headers["content-type"]
    assert slashed.content == plain.content
