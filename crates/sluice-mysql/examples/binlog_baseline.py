"""Baseline for binlog_bench: python-mysql-replication (PyPI
`mysql-replication`, is_mariadb=True) decoding the same binlog range into
row dicts. Prints one JSON line: rows, seconds, cpu_seconds, peak_rss_kb,
reconnects (connection errors it recovered from, re-reading rows).

usage: binlog_baseline.py PORT START_FILE START_POS END_FILE END_POS [START_GTID]

With is_mariadb=True the library starts from a GTID (auto_position) and
ignores file/position, so START_GTID is where it starts.
"""
import json
import logging
import resource
import sys
import time

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import XidEvent
from pymysqlreplication.row_event import WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent


class Count(logging.Handler):
    def __init__(self):
        super().__init__()
        self.reconnects = 0

    def emit(self, record):
        if "Re-request" in record.getMessage():
            self.reconnects += 1


def main():
    port, start_file, start_pos, end_file, end_pos = sys.argv[1:6]
    start_gtid = sys.argv[6] if len(sys.argv) > 6 else None
    start_pos, end_pos = int(start_pos), int(end_pos)
    counter = Count()
    logging.getLogger("pymysqlreplication").addHandler(counter)
    t0, r0 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    stream = BinLogStreamReader(
        connection_settings={"host": "127.0.0.1", "port": int(port), "user": "root", "passwd": ""},
        server_id=31337,
        is_mariadb=True,
        # blocking=False (BINLOG_DUMP_NON_BLOCK) makes MariaDB 10.11 reset the
        # connection every few events; the range end stops the loop instead.
        blocking=True,
        resume_stream=True,
        log_file=start_file,
        log_pos=start_pos,
        auto_position=start_gtid,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent],
    )
    rows = 0
    for ev in stream:
        if not isinstance(ev, XidEvent):
            for row in ev.rows:
                rows += 1
        if (stream.log_file, stream.log_pos) >= (end_file, end_pos):
            break
    stream.close()
    t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "rows": rows,
        "seconds": t1 - t0,
        "cpu_seconds": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "peak_rss_kb": r1.ru_maxrss,
        "reconnects": counter.reconnects,
    }))


if __name__ == "__main__":
    main()
