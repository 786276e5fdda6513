"""Time of an explorer results page over a large atlas index, beside the bare DuckDB queries behind it.

    .venv/bin/python bench/serve_page.py --rows 1000000

Generates an outdir whose stage files hold --rows ok predictions (MGnify-like ids, log-normal lengths,
pLDDT/pTM spread over their ranges, every prediction novel) in 2 drops x 10 chunks, builds its index with the
real `atlas index` (thresholds 0: every row is in the index), serves it with `atlas serve`'s app under uvicorn
on 127.0.0.1, and times whole HTTP requests for results pages (the HTML page and /api/search: default sort,
another sort deep in the pages, filters, an id prefix search), median of --repeat after a warm-up. The
baseline, timed in the same run, is the same search without the web: Atlas.search in-process (the count and
page SQL on a DuckDB cursor); the ratio is what HTTP, parsing and the templates add.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atlas.cli import main as atlas_main  # noqa: E402

DROPS = ("drop1", "drop2")
CHUNKS_PER_DROP = 10
PAGES = {
    "/  (default: pLDDT, descending)": "/",
    "/?sort=length&order=asc&page=5000": "/?sort=length&order=asc&page=5000",
    "/?min_plddt=80&max_ptm=0.9&novel=true&drop=drop2&sort=ptm": (
        "/?min_plddt=80&max_ptm=0.9&novel=true&drop=drop2&sort=ptm"
    ),
    "/?q=MGYP00000012 (id prefix)": "/?q=MGYP00000012",
    "/api/search?sort=identity&per_page=200": "/api/search?sort=identity&per_page=200",
}


def generate(outdir: Path, rows: int) -> None:
    """Stage files of `rows` ok predictions (no structures) and their novelty, written by DuckDB."""
    import duckdb

    per_chunk = -(-rows // (len(DROPS) * CHUNKS_PER_DROP))
    connection = duckdb.connect()
    number = 0
    for drop in DROPS:
        chunk_dir = outdir / "chunks" / drop
        chunk_dir.mkdir(parents=True)
        chunks = []
        for chunk_number in range(CHUNKS_PER_DROP):
            chunk = f"L0256-{chunk_number:05d}"
            chunks.append(chunk)
            (chunk_dir / f"{chunk}.fasta").write_text("")
            start, stop = number, min(rows, number + per_chunk)
            number = stop
            rows_sql = f"""SELECT 'MGYP' || lpad(i::VARCHAR, 12, '0') AS id, md5(i::VARCHAR) AS checksum,
                NULL::VARCHAR AS sequence,
                greatest(16, least(1280, round(exp(5.3 + 0.55 * sqrt(-2 * ln(random())) * cos(2 * pi() * random())))))::INTEGER AS length,
                (30 + 68 * random())::FLOAT AS mean_plddt, (0.1 + 0.89 * random())::FLOAT AS ptm,
                (300 * random())::INTEGER AS num_conf, NULL::FLOAT[] AS plddt, (31.75 * random())::FLOAT AS max_pae,
                NULL::BLOB AS pae, NULL::VARCHAR AS structure_format, NULL::BLOB AS structure, 'facebook/esmfold_v1' AS model, 3 AS num_recycles,
                'ok' AS status, NULL::VARCHAR AS error, '{drop}' AS "drop", '{chunk}' AS chunk
                FROM range({start}, {stop}) t(i)"""  # noqa: E501
            for folder in ("predictions", "novelty"):
                (outdir / folder / drop).mkdir(parents=True, exist_ok=True)
            connection.execute(f"CREATE OR REPLACE TABLE chunk_rows AS {rows_sql}")
            connection.execute(
                f"COPY chunk_rows TO '{outdir}/predictions/{drop}/{chunk}.parquet' (FORMAT parquet)"
            )
            connection.execute(
                f"""COPY (SELECT checksum, CASE WHEN random() < 0.5 THEN 'UniRef90_' || id END AS best_hit,
                    (0.2 + 0.7 * random()) AS identity, random() AS query_coverage,
                    random() AS target_coverage,
                    1e-5 AS evalue, true AS novel FROM chunk_rows)
                TO '{outdir}/novelty/{drop}/{chunk}.parquet' (FORMAT parquet)"""
            )
        connection.execute(
            f"""COPY (SELECT id, "drop", checksum, length::BIGINT AS length, 'queued' AS status,
                NULL::VARCHAR AS reason, chunk FROM read_parquet('{outdir}/predictions/{drop}/*.parquet'))
            TO '{chunk_dir}/manifest.parquet' (FORMAT parquet)"""
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(function, repeat: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds (CPU of this process: client, server and DuckDB threads; on a shared,
    loaded machine wall time also counts the waits for a core)."""
    function()  # warm-up: file metadata, plans
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    import httpx
    import uvicorn

    from atlas.serve.app import create_app
    from atlas.serve.store import parse_search

    with tempfile.TemporaryDirectory(prefix="atlas-serve-bench-") as tmp:
        outdir = Path(tmp) / "results"
        started = time.perf_counter()
        generate(outdir, args.rows)
        argv = ["index", "--outdir", str(outdir), "--drops", *DROPS, "--min-plddt", "0", "--min-ptm", "0"]
        argv += ["--predictions-dir", "predictions"]
        assert atlas_main([*argv, "--novelty"]) == 0
        print(f"generated and indexed {args.rows:,} rows in {time.perf_counter() - started:.1f} s")

        app = create_app(outdir)
        atlas = app.state.atlas
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                total = client.get("/api/search").json()["total"]
                print(f"index rows served: {total:,}\n")
                print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
                print(f"{'request':<62} {'page ms':>8} {'cpu ms':>7} {'SQL ms':>7} {'ratio':>6}")
                for label, url in PAGES.items():
                    response = client.get(url)
                    assert response.status_code == 200, (url, response.status_code, response.text[:200])
                    page_ms, page_cpu = timed(lambda url=url: client.get(url).raise_for_status(), args.repeat)
                    search = parse_search(
                        [tuple(item.split("=", 1)) for item in url.partition("?")[2].split("&") if item]
                    )
                    sql_ms, _ = timed(lambda search=search: atlas.search(search), args.repeat)
                    ratio = page_ms / sql_ms
                    print(f"{label:<62} {page_ms:>8.1f} {page_cpu:>7.1f} {sql_ms:>7.1f} {ratio:>6.2f}")
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
