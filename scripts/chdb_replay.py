#!/usr/bin/env python3
"""Replays a tokenbridge statement log on the ClickHouse engine embedded in chdb.

Usage: chdb_replay.py LOG OUT
       chdb_replay.py --parse STATEMENTS OUT

LOG is what `TOKENBRIDGE_SQL_LOG` recorded (src/ch/statement_log.rs): one JSON
object per statement, in the order tokenbridge sent them. Every statement runs
in a fresh on-disk chdb session; OUT gets one JSON line per statement:

    {"i": n, "ok": true|false, "error": "...", "meta": [[name, type], ...], "rows": [...]}

`meta` and `rows` are filled for queries (FORMAT JSONCompact). Inserts, which
tokenbridge sends as RowBinary over HTTP, are replayed with the same rows in a
format every engine accepts: the rows go to a JSONEachRow file that an
`INSERT ... SELECT ... FROM file(...)` reads. tests/compat.rs runs this for
each installed chdb and compares the results with ClickHouse 18.16's.

The first line of OUT is {"version": "<SELECT version()>"}.

With --parse, STATEMENTS is a JSON object {"statements": [sql, ...],
"settings": [[name, value], ...]}: statements that need a cluster (ON CLUSTER
DDL, replicated and Distributed engines), which an embedded engine cannot
run, are only parsed (EXPLAIN AST), and each setting is sent with a query
(SELECT 1 SETTINGS name = value), so an unknown name or value fails. OUT
gets {"i": n, "ok": ..., "error": ...} per statement, then per setting.
"""

import json
import os
import sys
import tempfile

import chdb
from chdb import session as chdb_session


class StderrCapture:
    """Collects what the engine prints on fd 2: old chdb versions report
    errors there instead of raising."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.file = tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", "replace")
        self.file.close()
        return False


def run(sess, sql, fmt="CSV"):
    """Runs one statement; returns (ok, error, text)."""
    with StderrCapture() as cap:
        try:
            res = sess.query(sql, fmt)
            text = res.data() if hasattr(res, "data") else str(res)
            error = None
            if hasattr(res, "error_message"):
                try:
                    error = res.error_message() or None
                except TypeError:
                    error = None
        except Exception as e:  # chdb 2.x raises ChdbError, 3.x RuntimeError
            return False, str(e), ""
    if error is None and "DB::Exception" in cap.text:
        error = cap.text.strip()
    return error is None, error, text


def column_types(sess, table):
    ok, err, text = run(sess, f"DESCRIBE TABLE {table}", "JSONCompact")
    if not ok:
        raise RuntimeError(f"describe {table}: {err}")
    return {row[0]: row[1] for row in json.loads(text)["data"]}


def main():
    log_path, out_path = sys.argv[1], sys.argv[2]
    workdir = tempfile.mkdtemp(prefix="chdb-replay-")
    sess = chdb_session.Session(os.path.join(workdir, "db"))
    database = None
    with open(log_path) as log, open(out_path, "w") as out:
        ok, err, text = run(sess, "SELECT version()", "JSONCompact")
        out.write(json.dumps({"version": json.loads(text)["data"][0][0] if ok else err}) + "\n")
        for i, line in enumerate(log):
            entry = json.loads(line)
            kind = entry["kind"]
            result = {"i": i, "kind": kind}
            if kind == "execute":
                sql = entry["sql"]
                if sql.startswith("CREATE DATABASE IF NOT EXISTS "):
                    database = sql.split()[-1]
                ok, err, _ = run(sess, sql)
            elif kind == "query":
                ok, err, text = run(sess, entry["sql"], "JSONCompact")
                if ok:
                    parsed = json.loads(text) if text.strip() else {"meta": [], "data": []}
                    result["meta"] = [[m["name"], m["type"]] for m in parsed["meta"]]
                    result["rows"] = parsed["data"]
            elif kind == "insert":
                table = f"{database}.{entry['table']}"
                types = column_types(sess, table)
                cols = entry["columns"]
                data = os.path.join(workdir, f"insert-{i}.jsonl")
                with open(data, "w") as f:
                    for row in entry["rows"]:
                        f.write(json.dumps(row) + "\n")
                structure = ", ".join(f"{c} {types[c]}" for c in cols).replace("'", "\\'")
                col_list = ", ".join(cols)
                ok, err, _ = run(
                    sess,
                    f"INSERT INTO {table} ({col_list}) SELECT {col_list} "
                    f"FROM file('{data}', 'JSONEachRow', '{structure}')",
                )
            else:
                ok, err = False, f"unknown kind {kind}"
            result["ok"] = ok
            if not ok:
                result["error"] = err
            out.write(json.dumps(result) + "\n")


def parse_main(in_path, out_path):
    with open(in_path) as f:
        spec = json.load(f)
    sess = chdb_session.Session(tempfile.mkdtemp(prefix="chdb-parse-"))
    with open(out_path, "w") as out:
        ok, err, text = run(sess, "SELECT version()", "JSONCompact")
        out.write(json.dumps({"version": json.loads(text)["data"][0][0] if ok else err}) + "\n")
        checks = [f"EXPLAIN AST {sql}" for sql in spec["statements"]]
        checks += [
            f"SELECT 1 SETTINGS {name} = '{value}'" for name, value in spec["settings"]
        ]
        for i, sql in enumerate(checks):
            ok, err, _ = run(sess, sql, "TSV")
            out.write(json.dumps({"i": i, "ok": ok, "error": err, "sql": sql}) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--parse":
        parse_main(sys.argv[2], sys.argv[3])
    else:
        main()
