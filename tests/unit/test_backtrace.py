"""The backtrace finder: each runtime's crash output as it prints it, read in chunks of any size, and
hostile logs kept bounded."""

import random

import pytest

from shared.pure.backtrace import MAX_FRAME_CHARS, MAX_FRAMES, BacktraceFinder, find_backtrace
from shared.pure.backtrace_frames import Frame, hash_frame, pick, without_arguments
from shared.pure.logscan import MAX_LINE_BYTES, LogScanner


def chunked(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


PY = b"""starting
Traceback (most recent call last):
  File "/app/solve.py", line 30, in <module>
    main()
  File "/app/solve.py", line 12, in compute
    return 1 / n
           ~~^~~
ZeroDivisionError: division by zero
"""
GO = b"""panic: runtime error: integer divide by zero
[signal SIGFPE: floating-point exception code=0x1 addr=0x0 pc=0x45]

goroutine 1 [running]:
main.compute(...)
\t/app/main.go:12
main.main()
\t/app/main.go:20 +0x1d

goroutine 5 [chan receive]:
main.worker()
\t/app/worker.go:7 +0x2a
exit status 2
"""

CASES = [
    # (name, log, (format, kind, frame) or None)
    ("python traceback: innermost frame, exception type", PY, ("python", "ZeroDivisionError", "compute (/app/solve.py:12)")),
    ("python chained: the last traceback", b"""Traceback (most recent call last):
  File "a.py", line 3, in load
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "a.py", line 5, in load
  File "b.py", line 9, in fallback
mylib.errors.ConfigError: no default
""", ("python", "mylib.errors.ConfigError", "fallback (b.py:9)")),
    ("python syntax error: no function", b"""Traceback (most recent call last):
  File "job.py", line 3
    def f(
         ^
SyntaxError: '(' was never closed
""", ("python", "SyntaxError", "job.py:3")),
    ("python traceback cut off at the end of the log", b"""Traceback (most recent call last):
  File "/app/run.py", line 8, in step
    work()""", ("python", None, "step (/app/run.py:8)")),
    ("faulthandler: the current thread's first frame", b"""Fatal Python error: Segmentation fault

Thread 0x00007f0000000700 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait

Current thread 0x00007f1234567740 (most recent call first):
  File "/app/native.py", line 8 in crash
  File "/app/native.py", line 12 in <module>

Extension modules: numpy.core._multiarray_umath (total: 1)
Segmentation fault (core dumped)
""", ("python-fatal", "Segmentation fault", "crash (/app/native.py:8)")),
    ("glibc backtrace_symbols from a signal handler: the frame after the trampoline", b"""Error: signal 11:
./solver(print_trace+0x1f)[0x55d4c3a0b1a9]
./solver(handler+0x2a)[0x55d4c3a0b1c0]
/lib/x86_64-linux-gnu/libc.so.6(+0x42520)[0x7f3a1c842520]
./solver(compute+0x1d)[0x55d4c3a0b1d9]
./solver(main+0x30)[0x55d4c3a0b200]
/lib/x86_64-linux-gnu/libc.so.6(+0x29d90)[0x7f3a1c829d90]
/lib/x86_64-linux-gnu/libc.so.6(__libc_start_main+0x80)[0x7f3a1c829e40]
./solver(_start+0x25)[0x55d4c3a0b0a5]
""", ("glibc", None, "compute+0x1d (solver)")),
    ("glibc backtrace_symbols without symbols: module and offset", b"""./solver(+0x11d9)[0x55d4c3a0b1d9]
/lib/x86_64-linux-gnu/libc.so.6(__libc_start_main+0x80)[0x7f3a1c829e40]
""", ("glibc", None, "solver+0x11d9")),
    ("gdb: past glibc's frames to the program's", b"""Program terminated with signal SIGABRT, Aborted.
#0  0x00007ffff7e3e9fc in __pthread_kill_implementation (no_tid=0, signo=6, threadid=1) at ./nptl/pthread_kill.c:44
#1  0x00007ffff7dea476 in __GI_raise (sig=sig@entry=6) at ../sysdeps/posix/raise.c:26
#2  0x00007ffff7dd07f3 in abort () from /lib/x86_64-linux-gnu/libc.so.6
#3  0x000055555555513d in compute (n=0) at solver.c:42
#4  0x0000555555555160 in main () at solver.c:50
""", ("gdb", "SIGABRT", "compute (solver.c:42)")),
    ("gdb: a frame above the signal handler is the handler's", b"""#0  on_signal (sig=11) at handler.c:5
#1  <signal handler called>
#2  0x000055555555513d in compute (n=0) at solver.c:42
""", ("gdb", None, "compute (solver.c:42)")),
    ("gdb bt full: locals between frames", b"""#0  0x000055555555513d in compute (n=0) at solver.c:42
        p = 0x0
#1  0x0000555555555160 in main () at solver.c:50
No symbol table info available.
""", ("gdb", None, "compute (solver.c:42)")),
    ("gdb without debug info: function and module", b"""#0  0x00007f2a1b2c3d4e in kernel_step () from /opt/app/libphysics.so
#1  0x0000555555555160 in main ()
""", ("gdb", None, "kernel_step (libphysics.so)")),
    ("gdb thread apply all bt: the last thread", b"""Thread 2 (Thread 0x7ffff7d8a640 (LWP 101)):
#0  0x00007ffff7e91d7f in __GI___poll (fds=0x1, nfds=1, timeout=-1) at ../sysdeps/unix/sysv/linux/poll.c:29
#1  0x0000555555555300 in wait_io () at io.c:7

Thread 1 (Thread 0x7ffff7d8b740 (LWP 100)):
#0  0x000055555555513d in compute (n=0) at solver.c:42
""", ("gdb", None, "compute (solver.c:42)")),
    ("lldb", b"""* thread #1, stop reason = EXC_BAD_ACCESS (code=1, address=0x0)
  * frame #0: 0x0000000100003f58 solver`compute(n=0) at solver.c:5:10
    frame #1: 0x0000000100003f8c solver`main at solver.c:10:3
""", ("lldb", None, "compute (solver.c:5)")),
    ("address sanitizer: its first stack, not the allocation's", b"""=================================================================
==12345==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000014 at pc 0x55d1 bp 0x7ffd sp 0x7ffd
READ of size 4 at 0x602000000014 thread T0
    #0 0x55d1c8c9a1f5 in compute /src/solver.c:42:7
    #1 0x55d1c8c9a2a0 in main /src/solver.c:50:3
    #2 0x7f2b in __libc_start_main (/lib/x86_64-linux-gnu/libc.so.6+0x29d8f) (BuildId: 4f7b)

0x602000000014 is located 0 bytes to the right of 4-byte region [0x602000000010,0x602000000014)
allocated by thread T0 here:
    #0 0x4c in malloc (/usr/lib/x86_64-linux-gnu/libasan.so.6+0xb0807)
    #1 0x55d1 in setup /src/solver.c:10:14

SUMMARY: AddressSanitizer: heap-buffer-overflow /src/solver.c:42:7 in compute
==12345==ABORTING
""", ("sanitizer", "ASan: heap-buffer-overflow", "compute (/src/solver.c:42)")),
    ("address sanitizer: past its own runtime's frames", b"""==1==ERROR: AddressSanitizer: attempting double-free on 0x6020 in thread T0:
    #0 0x7f in __interceptor_free (/usr/lib/x86_64-linux-gnu/libasan.so.6+0xb0807)
    #1 0x55 in release /src/pool.c:20:5
""", ("sanitizer", "ASan: attempting double-free", "release (/src/pool.c:20)")),
    ("address sanitizer unsymbolized: module and offset", b"""==7==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000000 (pc 0x55 bp 0x7f sp 0x7f T0)
    #0 0x55d1c8c9a1f5  (/app/solver+0x11f5)
    #1 0x7f2b  (/lib/x86_64-linux-gnu/libc.so.6+0x29d8f)
""", ("sanitizer", "ASan: SEGV", "solver+0x11f5")),
    ("undefined behaviour sanitizer", b"solver.c:5:12: runtime error: signed integer overflow: 2147483647 + 1 "
                                      b"cannot be represented in type 'int'\n",
     ("sanitizer", "UBSan: signed integer overflow", "solver.c:5")),
    ("rust panic", b"thread 'main' panicked at src/main.rs:10:5:\nattempt to divide by zero\n"
                   b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
     ("rust", "panic", "src/main.rs:10")),
    ("rust panic, before 1.73", b"thread 'worker-3' panicked at 'called `Option::unwrap()` on a `None` value', "
                                b"src/lib.rs:42:18\n", ("rust", "panic", "src/lib.rs:42")),
    ("go panic: the first goroutine's first frame", GO, ("go", "panic", "main.compute (/app/main.go:12)")),
    ("go panic: past the runtime's frames", b"""panic: assignment to entry in nil map

goroutine 1 [running]:
runtime.mapassign_faststr(0x4a, 0x0, {0x4b, 0x1})
\t/usr/local/go/src/runtime/map_faststr.go:203 +0x3e5
main.(*Solver).Step(0xc000010000)
\t/app/solver.go:33 +0x45
""", ("go", "panic", "main.(*Solver).Step (/app/solver.go:33)")),
    ("go fatal error", b"""fatal error: all goroutines are asleep - deadlock!

goroutine 1 [chan receive]:
main.main()
\t/app/main.go:9 +0x2d
""", ("go", "fatal error", "main.main (/app/main.go:9)")),
    ("java: past the JDK's frames", b"""Exception in thread "main" java.lang.NumberFormatException: For input string: "x"
\tat java.base/java.lang.NumberFormatException.forInputString(NumberFormatException.java:67)
\tat java.base/java.lang.Integer.parseInt(Integer.java:668)
\tat com.acme.Solver.parse(Solver.java:10)
\tat com.acme.Solver.main(Solver.java:4)
Caused by: java.io.IOException: disk
\tat com.acme.Disk.read(Disk.java:3)
""", ("java", "java.lang.NumberFormatException", "com.acme.Solver.parse (Solver.java:10)")),
    (".NET", b"""Unhandled exception. System.DivideByZeroException: Attempted to divide by zero.
   at Acme.Solver.Compute(Int32 n) in /src/Solver.cs:line 12
   at Acme.Solver.Main(String[] args) in /src/Solver.cs:line 20
""", ("dotnet", "System.DivideByZeroException", "Acme.Solver.Compute (/src/Solver.cs:12)")),
    (".NET without symbols, past System's frames", b"""Unhandled exception. System.FormatException: The input string 'x' was not in a correct format.
   at System.Number.ThrowFormatException[TChar](ReadOnlySpan`1 value)
   at System.Int32.Parse(String s)
   at Acme.Solver.Main(String[] args)
""", ("dotnet", "System.FormatException", "Acme.Solver.Main")),
    ("the last one wins: a handled traceback logged, then the crash", b"""WARNING retrying
Traceback (most recent call last):
  File "net.py", line 4, in fetch
TimeoutError: timed out
carrying on
thread 'main' panicked at src/solve.rs:7:9:
index out of bounds
""", ("rust", "panic", "src/solve.rs:7")),
    ("crlf line ends", PY.replace(b"\n", b"\r\n"), ("python", "ZeroDivisionError", "compute (/app/solve.py:12)")),
    ("no backtrace: words that look like one", b"#0 items done\nerror: no panic here\npanic: disk full\n"
                                               b"Traceback (most recent call last) was not printed\n", None),
    ("empty", b"", None),
]


@pytest.mark.parametrize(("name", "log", "expected"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_backtraces(name, log, expected, chunk):
    found = find_backtrace(chunked(log, chunk))
    assert (None if found is None else (found.format, found.kind, found.frame)) == expected


@pytest.mark.parametrize(("name", "log", "expected"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_told_where_logscan_found_no_error_word_it_finds_the_same(name, log, expected, chunk):
    """As the collector feeds it: a chunk in which logscan's count of error lines did not move is searched
    for the markers that hold no error word only."""
    scanner, finder = LogScanner(tail_lines=0), BacktraceFinder()
    for part in chunked(log, chunk):
        seen = scanner.error_lines_so_far
        scanner.feed(part)
        finder.feed(part, error_words=scanner.error_lines_so_far > seen)
    assert finder.result() == find_backtrace(chunked(log, chunk))


@pytest.mark.parametrize("log", [PY, GO], ids=["python", "go"])
def test_a_backtrace_split_at_any_byte_is_found_the_same(log):
    whole = find_backtrace([log])
    for cut in range(len(log) + 1):
        assert find_backtrace([log[:cut], log[cut:]]) == whole, cut


def test_a_ten_megabyte_line_is_cut_not_buffered():
    finder = BacktraceFinder()
    for _ in range(10):
        finder.feed(b"#0 " + b"x" * (1 << 20))  # one line of 10 MB, no newline yet
        assert len(finder._partial) <= MAX_LINE_BYTES
    finder.feed(b"\n" + b"Traceback (most recent call last):" + b"y" * 10_000_000 + b"\n" + PY)
    found = finder.result()
    assert (found.format, found.kind, found.frame) == ("python", "ZeroDivisionError", "compute (/app/solve.py:12)")


def test_binary_garbage_finds_nothing_and_does_not_hide_what_follows():
    garbage = random.Random(7).randbytes(4 << 20)
    assert find_backtrace(chunked(garbage, 1 << 20)) is None
    found = find_backtrace(chunked(garbage + b"\n" + GO, 1 << 20))
    assert found.frame == "main.compute (/app/main.go:12)"


def test_secrets_in_a_frame_are_dropped_or_redacted():
    log = (b'#0  0x000055555555513d in upload (url=0x5555 "https://acct.blob.core.windows.net/c?sv=1&sig=SECRET1", '
           b'password=0x5556 "hunter2") at net.c:42\n'
           b'Traceback (most recent call last):\n'
           b'  File "/mnt/https://acct.blob.core.windows.net/c?sp=r&sig=SECRET2/run.py", line 3, in go\n'
           b'PermissionError: denied\n')
    assert find_backtrace([log[:log.index(b"Traceback")]]).frame == "upload (net.c:42)", "arguments are not kept"
    # The signature runs to the next delimiter, so the rest of the path goes with it.
    assert find_backtrace([log]).frame == "go (/mnt/https://acct.blob.core.windows.net/c?sp=r&sig=REDACTED"


@pytest.mark.parametrize("log", [
    b'Traceback (most recent call last):\n  File "/mnt/c?sp=r&sig=' + b"S" * 54 + b"/" + b"m" * 40
    + b'.py", line 3, in go\nPermissionError: denied\n',
    b"#0  0x000055555555513d in f () at /srv/x?token=" + b"S" * 90 + b"/a.c:4\n",
])
def test_a_secret_in_a_long_path_is_redacted_before_the_path_is_cut(log):
    # Cut first, the path would lose the `sig=` / `token=` that marks the value, and the value would stay.
    frame = find_backtrace([log]).frame
    assert "SSSS" not in frame and len(frame) <= 100, frame


def test_a_signal_header_names_only_a_stack_that_follows_it_closely():
    old_signal = b"child received signal SIGTERM\n" + b"working on it\n" * 100
    stack = b"#0  0x0000555555555149 in compute () at solver.c:4\n"
    far = find_backtrace(chunked(old_signal + stack, 512))
    assert (far.frame, far.kind) == ("compute (solver.c:4)", None)
    near = find_backtrace([b"Program received signal SIGSEGV, Segmentation fault.\n(gdb) bt\n" + stack])
    assert (near.frame, near.kind) == ("compute (solver.c:4)", "SIGSEGV")


def test_ten_thousand_frames_stay_bounded():
    deep = b"Traceback (most recent call last):\n" + b"".join(
        b'  File "/app/r.py", line %d, in f%d\n    f()\n' % (i, i) for i in range(10_000)) + b"RecursionError: deep\n"
    assert find_backtrace(chunked(deep, 4096)).frame == "f9999 (/app/r.py:9999)"
    # The program's frame lies past the MAX_FRAMES kept: the first frame is shown, the rest never held.
    native = b"".join(b"#%d  0x00007f00 in __loop%d () at ../sysdeps/x.c:1\n" % (i, i) for i in range(10_000))
    finder = BacktraceFinder()
    for chunk in chunked(native + b"#10000 0x5555 in compute () at solver.c:5\n", 4096):
        finder.feed(chunk)
        assert finder._active is None or len(finder._active.frames) <= MAX_FRAMES
    assert finder.result().frame == "__loop0 (../sysdeps/x.c:1)"


def test_what_is_kept_is_printable_and_cut():
    log = b'Traceback (most recent call last):\n  File "/a/\x1b[31m' + b"d" * 1500 + b'.py", line 1, in f\nE\n'
    found = find_backtrace([log])
    assert found.frame == "f (\u2026" + "d" * 90 + ".py:1)", "the path loses its start, the file name and line stay"
    assert len(found.frame) == MAX_FRAME_CHARS


def test_a_long_kind_loses_its_packages_and_names_are_made_printable():
    log = (b'Exception in thread "main" java.util.concurrent.ConcurrentModificationException\n'
           b"\tat com.acme.Bo\x07ok.add(Book.java:3)\n")
    found = find_backtrace([log])
    assert (found.kind, found.frame) == ("ConcurrentModificationException", "com.acme.Bo\ufffdok.add (Book.java:3)")


@pytest.mark.parametrize(("name", "plain"), [
    ("compute (n=0, s=0x1 \"a\")", "compute"),
    ("ns::Solver::step(int, double)", "ns::Solver::step"),
    ("operator()(int)", "operator()"),
    ("operator() (this=0x1)", "operator()"),
    ("f (s=0x1 \"a)b\")", "f"),
    ("Acme.Solver.Compute(Int32 n)", "Acme.Solver.Compute"),
    ("main", "main"),
])
def test_arguments_are_dropped_from_names(name, plain):
    assert without_arguments(name) == plain


@pytest.mark.parametrize(("line", "frame"), [
    ("#3  0x000055555555513d in compute (n=0) at solver.c:42", Frame("compute", "solver.c", 42)),
    ("#0  compute (n=0) at solver.c:42", Frame("compute", "solver.c", 42)),
    ("#2  0x00007ffff7dd07f3 in abort () from /lib/x86_64-linux-gnu/libc.so.6",
     Frame("abort", module="libc.so.6", system=True)),
    ("#1  0x0000555555555160 in ?? ()", Frame(system=True)),
    ("    #1 0x7f2b in __libc_start_main (/lib/x86_64-linux-gnu/libc.so.6+0x29d8f) (BuildId: 4f7b)",
     Frame("__libc_start_main", module="libc.so.6", offset="0x29d8f", system=True)),
    ("    #0 0x55d1c8c9a1f5 in ns::step(int) /src/a:b/solver.cc:42:7", Frame("ns::step", "/src/a:b/solver.cc", 42)),
    ("    #0 0x55 in f /usr/include/c++/12/bits/stl_vector.h:1123:2",
     Frame("f", "/usr/include/c++/12/bits/stl_vector.h", 1123, system=True)),
])
def test_native_frames_are_read(line, frame):
    assert hash_frame(line)[1] == frame


@pytest.mark.parametrize("line", ["#0 items done", "#0", "#0 look at foo.c:12", "#x 0x1 in f ()"])
def test_lines_that_are_not_frames(line):
    assert hash_frame(line) is None


def test_pick_prefers_the_programs_frame_and_falls_back_to_the_first():
    mine, libc = Frame("compute", "solver.c", 42), Frame("raise", module="libc.so.6", system=True)
    assert pick([libc, mine]) == mine
    assert pick([libc, libc]) == libc
    assert pick([mine, Frame(trampoline=True), libc, Frame("inner", "x.c", 1)]) == Frame("inner", "x.c", 1)
    assert pick([]) is None
