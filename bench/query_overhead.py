"""What SQLAlchemy's execution bookkeeping costs on the hot path, and what Query saves.

Runs the retrieve statement of a course session on the small benchmark dataset three
ways, N times each, and prints the mean time per call: ``Connection.execute`` (the
statement cached and built once), ``coursebook.query.Query.rows``, and the bare
DBAPI cursor with the same SQL. The dataset is the benchmark's, built when missing.

    python -m bench.query_overhead [N]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from bench.run import dataset
from coursebook.access import STAFF
from coursebook.db import create_db_engine
from coursebook.graph import COURSE_SESSION
from coursebook.projection import compile_projection
from coursebook.query import Query
from coursebook.service import OBJECT_ID, retrieve_query


def mean_us(calls: int, call: Callable[[], Any]) -> float:
    call()
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    url, _manifest = dataset("small")
    engine = create_db_engine(url)
    columns = compile_projection(COURSE_SESSION.name, "", "").columns
    query: Query = retrieve_query(COURSE_SESSION, STAFF, columns)
    params = {"access_provider_id": 1, OBJECT_ID.key: 5}
    with engine.connect() as conn:
        compiled = query.statement.compile(dialect=engine.dialect)
        state = compiled.construct_expanded_state(params)
        sql = state.statement
        arguments = [state.parameters[key] for key in state.positiontup or ()]
        raw = conn.connection.dbapi_connection
        assert raw is not None

        def bare() -> Any:
            cursor = raw.cursor()
            cursor.execute(sql, arguments)
            rows = cursor.fetchall()
            cursor.close()
            return rows

        timings = {
            "Connection.execute": mean_us(
                calls, lambda: conn.execute(query.statement, params).mappings().all()
            ),
            "Query.rows": mean_us(calls, lambda: query.rows(conn, params)),
            "DBAPI cursor": mean_us(calls, bare),
        }
    for name, micros in timings.items():
        print(f"{name:20} {micros:7.1f} us per call")


if __name__ == "__main__":
    main()
