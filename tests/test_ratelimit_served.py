"""ratelimit across processes: two ``middleware-kit serve`` behind one Redis, one memcached."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import pytest

from tests.support.servers import BackgroundServer, ServedApp, served

N = 10
INI = """\
[pipeline:main]
pipeline = ratelimit demo

[filter:ratelimit]
use = egg:middleware_kit#ratelimit
limits = (POST, "*", .*, {n}, MINUTE)
key = user
storage_url = {url}
storage_timeout = 0.5
fail_open = {fail_open}

[app:demo]
use = egg:middleware_kit#demo
"""


def write_ini(tmp_path: Path, url: str, fail_open: str) -> Path:
    ini = tmp_path / f"fail-open-{fail_open}.ini"
    ini.write_text(INI.format(n=N, url=url, fail_open=fail_open))
    return ini


def create(app: ServedApp, user: str = "alice") -> tuple[int, dict[str, str], bytes]:
    # No auth filter in this pipeline: the client's own X-User-Id is the identity.
    headers = {"Content-Type": "application/json", "X-User-Id": user}
    return app.request("/cats", method="POST", body=b'{"name": "x"}', headers=headers)


@pytest.mark.server
@pytest.mark.parametrize(
    "storage",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("memcached", marks=pytest.mark.memcached),
    ],
)
def test_two_servers_share_exact_counts(
    tmp_path: Path, request: pytest.FixtureRequest, storage: str
) -> None:
    server: BackgroundServer
    server, url = request.getfixturevalue(f"{storage}_server")
    with (
        served(write_ini(tmp_path, url, "true")) as open_app,
        served(write_ini(tmp_path, url, "false")) as closed_app,
    ):
        apps = [open_app, closed_app]
        # 4N concurrent requests of one client, spread over both processes.
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: create(apps[i % 2]), range(4 * N)))
        statuses = [status for status, _headers, _body in answers]
        assert statuses.count(201) == N, statuses
        assert statuses.count(429) == 3 * N, statuses
        for status, headers, body in answers:
            if status == 429:
                assert 1 <= int(headers["retry-after"]) <= 60
                assert json.loads(body)["overLimit"]["retryAfter"] == headers["retry-after"]
        assert create(open_app, user="bob")[0] == 201  # another user has his own count

        server.stop()  # the storage goes away mid-run
        # carol is not known to be over her limit: only the storage could tell.
        assert [create(open_app, "carol")[0] for _ in range(3)] == [201] * 3  # fail_open
        assert [create(closed_app, "carol")[0] for _ in range(3)] == [503] * 3  # fail_open = false

        server.start()  # back, empty: counting resumes without a restart of the apps
        after = [create(apps[i % 2], "dave") for i in range(N + 1)]
        assert [status for status, _h, _b in after] == [201] * N + [429]
        assert after[0][1]["ratelimit"] == f'"post-minute";r={N - 1};t=60'
