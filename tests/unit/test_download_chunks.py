"""A download's body: the bytes asked for, a chunk at a time, and a stored file shorter than its records
say fails mid-body (the response is cut) instead of ending as if whole."""

from __future__ import annotations

import io

import pytest

from shared.flows import downloads


class Tracked(io.BytesIO):
    closed_by_us = False

    def close(self) -> None:
        self.closed_by_us = True
        super().close()


@pytest.mark.parametrize("data, skip, length, chunks", [
    (b"abcdef", 0, 6, [b"abcdef"]),
    (b"abcdef", 2, 3, [b"cde"]),
    (b"x" * (downloads.CHUNK + 5), 0, downloads.CHUNK + 5, [b"x" * downloads.CHUNK, b"xxxxx"]),
    (b"x" * (downloads.CHUNK * 2 + 9), downloads.CHUNK + 1, 3, [b"xxx"]),
    (b"abc", 0, 0, []),
])
def test_the_span_asked_for_in_chunks(data, skip, length, chunks):
    stream = Tracked(data)
    assert list(downloads.read_span(stream, skip, length)) == chunks
    assert stream.closed_by_us


@pytest.mark.parametrize("data, skip, length, sent, message", [
    (b"abc", 0, 5, [b"abc"], "the stored file ends 2 bytes early"),
    (b"abc", 4, 1, [], "the stored file ends 2 bytes early"),
])
def test_a_file_shorter_than_its_record_fails_mid_body(data, skip, length, sent, message, caplog):
    stream = Tracked(data)
    got = []
    with pytest.raises(downloads.Truncated) as cut:
        for chunk in downloads.read_span(stream, skip, length, "job-a/node-1/job-1/task-1/stdout.txt"):
            got.append(chunk)
    assert (got, str(cut.value), stream.closed_by_us) == (sent, message, True)
    # Logged where it happens: after the invocation ended, no one else would say it.
    [record] = [r for r in caplog.records if r.name == "orchestrator.downloads"]
    assert (record.getMessage(), record.file, record.error) == (
        "download.failed", "job-a/node-1/job-1/task-1/stdout.txt", f"Truncated: {message}")
