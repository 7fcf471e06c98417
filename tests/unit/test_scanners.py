import hashlib

import pytest

from shared.pure.crashdump import ELF_CORE, MINIDUMP, UNKNOWN, CrashDumpScanner, scan_crash_dump
from shared.pure.logscan import LogScanner, scan_log
from tests.unit.dumps import elf_core, minidump


def chunked(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


LOG_CASES = [
    # (name, content, lines, error lines, last lines with tail=3)
    ("empty", b"", 0, 0, []),
    ("one line no newline", b"hello", 1, 0, ["hello"]),
    ("one line", b"hello\n", 1, 0, ["hello"]),
    ("blank lines", b"\n\n", 2, 0, ["", ""]),
    ("crlf", b"a\r\nb\r\n", 2, 0, ["a", "b"]),
    ("errors any case", b"ok\nERROR x\nException: y\nfatal\nTraceback (most\npanic: z\nSegfault\nfine\n", 8, 6,
     ["panic: z", "Segfault", "fine"]),
    ("word inside", b"no errors here\nterrorist\n", 2, 2, ["no errors here", "terrorist"]),
    ("invalid utf8", b"\xff\xfe bad\n", 1, 0, ["\ufffd\ufffd bad"]),
]


@pytest.mark.parametrize(("name", "data", "lines", "errors", "tail"), LOG_CASES, ids=[c[0] for c in LOG_CASES])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_log_scan(name, data, lines, errors, tail, chunk):
    summary = scan_log(chunked(data, chunk), tail_lines=3)
    assert (summary.lines, summary.error_lines, summary.last_lines) == (lines, errors, tail)
    assert summary.size == len(data) and summary.sha256 == hashlib.sha256(data).hexdigest()


def test_long_lines_are_cut_not_buffered():
    scanner = LogScanner(tail_lines=2, max_line_bytes=10)
    for _ in range(1000):
        scanner.feed(b"x" * 1000)  # a 1 MB line with no newline
    assert len(scanner._partial) <= 10
    scanner.feed(b" error at the end\nnext\n")
    result = scanner.result()
    assert result.lines == 2 and result.last_lines == ["x" * 10, "next"]
    assert result.error_lines == 0  # the match is beyond the cut: documented trade-off
    assert result.size == 1_000_000 + len(b" error at the end\nnext\n")


def test_tail_is_bounded():
    data = b"".join(b"line %d\n" % i for i in range(10_000))
    summary = scan_log(chunked(data, 4096), tail_lines=5)
    assert summary.lines == 10_000 and summary.last_lines == [f"line {i}" for i in range(9995, 10_000)]


CRASH_CASES = [
    # (name, bytes, format, executable, signal name, exception code, location)
    ("elf segv", elf_core(), ELF_CORE, "myapp", "SIGSEGV", None, "myapp+0x123"),
    ("elf abort, no siginfo", elf_core(signal=6, siginfo=False), ELF_CORE, "myapp", "SIGABRT", None, "myapp+0x123"),
    ("elf no file map", elf_core(mapped=None, pc=0x7F00_1234_5ABC), ELF_CORE, "myapp", "SIGSEGV", None,
     "pc&0xfff=0xabc"),
    ("elf aarch64", elf_core(machine=183, exe="worker"), ELF_CORE, "worker", "SIGSEGV", None, "myapp+0x123"),
    ("elf truncated", elf_core()[:40], ELF_CORE, None, None, None, None),
    ("elf not a core", b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00" + bytes(100), UNKNOWN, None, None, None,
     None),
    ("minidump av", minidump(), MINIDUMP, "MyApp.exe", None, "0xC0000005", "MyApp.exe+0x1234"),
    ("minidump stack overflow", minidump(code=0xC00000FD), MINIDUMP, "MyApp.exe", None, "0xC00000FD",
     "MyApp.exe+0x1234"),
    ("minidump outside modules", minidump(offset=0x201234), MINIDUMP, "MyApp.exe", None, "0xC0000005",
     "addr&0xffff=0x1234"),
    ("minidump no exception", minidump(with_exception=False), MINIDUMP, "MyApp.exe", None, None, None),
    ("minidump truncated", b"MDMP\x93\xa7", MINIDUMP, None, None, None, None),
    ("text", b"not a dump at all", UNKNOWN, None, None, None, None),
    ("empty", b"", UNKNOWN, None, None, None, None),
]


@pytest.mark.parametrize(("name", "data", "fmt", "exe", "sig", "code", "loc"), CRASH_CASES,
                         ids=[c[0] for c in CRASH_CASES])
@pytest.mark.parametrize("chunk", [5, 64, 1 << 20])
def test_crash_scan(name, data, fmt, exe, sig, code, loc, chunk):
    s = scan_crash_dump(chunked(data, chunk))
    assert (s.format, s.executable, s.signal_name, s.exception_code, s.location) == (fmt, exe, sig, code, loc)
    assert s.size == len(data) and s.sha256 == hashlib.sha256(data).hexdigest()
    assert len(s.fingerprint) == 64


def test_fingerprint_groups_same_crash_across_runs():
    a = scan_crash_dump([elf_core() + b"A" * 1000])
    b = scan_crash_dump([elf_core(pc=0x5566_0000_0123, mapped=("/opt/app/bin/myapp", 0x5566_0000_0000,
                                                               0x5566_0000_9000)) + b"B" * 5000])
    assert a.sha256 != b.sha256 and a.fingerprint == b.fingerprint  # ASLR moved the image


@pytest.mark.parametrize(
    ("other",),
    [(elf_core(signal=6),), (elf_core(exe="other"),), (elf_core(pc=0x5555_5555_4200),), (minidump(),)],
)
def test_fingerprint_separates_different_crashes(other):
    assert scan_crash_dump([elf_core()]).fingerprint != scan_crash_dump([other]).fingerprint


def test_process_arguments_are_not_kept():
    assert "hunter2" not in str(scan_crash_dump([elf_core()]).to_dict())


def test_header_window_bounds_memory():
    scanner = CrashDumpScanner(header_window=1024)
    head = elf_core()
    scanner.feed(head)
    for _ in range(100):
        scanner.feed(b"\0" * 65536)
    assert len(scanner._head) == 1024
    result = scanner.result()
    assert result.size == len(head) + 100 * 65536 and result.executable == "myapp"


@pytest.mark.parametrize("seed", range(5))
def test_log_scan_matches_a_naive_reference(seed):
    import random
    import re

    rng = random.Random(seed)
    words = ["ok", "Error", "EXCEPTION", "fatal", "tracebacK", "panic", "segFault", "err", "", "x" * 50]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 4))) for _ in range(500)]
    data = "\n".join(lines).encode() + (b"\n" if seed % 2 else b"")
    pattern = re.compile(r"error|exception|fatal|traceback|panic|segfault", re.IGNORECASE)
    expected_lines = data.split(b"\n")
    if expected_lines[-1] == b"":
        expected_lines.pop()
    expected_errors = sum(1 for line in expected_lines if pattern.search(line.decode()))
    for chunk in (1, 13, 100, 4096):
        summary = scan_log(chunked(data, chunk), tail_lines=4)
        assert (summary.lines, summary.error_lines) == (len(expected_lines), expected_errors)
        assert summary.last_lines == [line.decode() for line in expected_lines[-4:]]


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_first_error_lines_are_kept_cut_and_redacted(chunk):
    data = (b"ok\n" * 100 + b"ERROR: upload https://a/c?sp=w&sig=SECRET failed\n" + b"fine\n"
            + b"Traceback (most recent call last): " + b"x" * 5000 + b"\n" + b"panic one\npanic two\n")
    summary = scan_log([data[i:i + chunk] for i in range(0, len(data), chunk)])
    assert summary.error_lines == 4
    assert summary.first_errors[0] == "ERROR: upload https://a/c?sp=w&sig=REDACTED failed"
    assert summary.first_errors[1].startswith("Traceback (most recent call last): xxx")
    assert len(summary.first_errors[1]) == 200
    assert summary.first_errors[2] == "panic one"
    assert len(summary.first_errors) == 3


def test_names_read_out_of_a_dump_are_bounded_and_printable():
    hostile = "/opt/" + "\u202e" * 10 + "x" * 100_000
    summary = scan_crash_dump([elf_core(exe="e\u202evil", mapped=(hostile, 0x5555_5555_4000, 0x5555_5555_9000))])
    assert summary.location is not None and len(summary.location) <= 200 and summary.location.isprintable()
    assert summary.executable.isprintable() and "\u202e" not in summary.executable
