"""Build synthetic ELF cores and minidumps for tests and the benchmark (headers only, then filler)."""

from __future__ import annotations

import struct


def _note(ntype: int, name: bytes, desc: bytes) -> bytes:
    name = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def elf_core(exe: str = "myapp", signal: int = 11, pc: int = 0x5555_5555_4123, machine: int = 62,
             mapped: tuple[str, int, int] | None = ("/opt/app/bin/myapp", 0x5555_5555_4000, 0x5555_5555_9000),
             siginfo: bool = True, body: int = 0) -> bytes:
    """64-bit little-endian ET_CORE with one PT_NOTE: PRSTATUS, PRPSINFO, optional SIGINFO and FILE."""
    prstatus = bytearray(336 if machine == 62 else 392)
    struct.pack_into("<iii", prstatus, 0, signal, 0, 0)
    struct.pack_into("<h", prstatus, 12, signal)
    struct.pack_into("<Q", prstatus, 112 + (16 if machine == 62 else 32) * 8, pc)
    prpsinfo = bytearray(136)
    prpsinfo[40 : 40 + 16] = exe.encode()[:15].ljust(16, b"\0")
    prpsinfo[56 : 56 + 80] = b"/opt/app/bin/myapp --secret=hunter2".ljust(80, b"\0")
    notes = _note(1, b"CORE", bytes(prstatus)) + _note(3, b"CORE", bytes(prpsinfo))
    if siginfo:
        notes += _note(0x53494749, b"CORE", struct.pack("<iii", signal, 1, 0) + bytes(116))
    if mapped:
        path, start, end = mapped
        desc = struct.pack("<QQ", 1, 4096) + struct.pack("<QQQ", start, end, 0) + path.encode() + b"\0"
        notes += _note(0x46494C45, b"CORE", desc)
    phoff, phnum = 64, 2
    note_off = phoff + 56 * phnum
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 4, machine, 1, 0, phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
    ph_note = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), 0, 4)
    load_off = note_off + len(notes)
    ph_load = struct.pack("<IIQQQQQQ", 1, 5, load_off, 0x400000, 0, body, body, 4096)
    return header + ph_note + ph_load + notes


def minidump(exe: str = r"C:\app\MyApp.exe", code: int = 0xC0000005, base: int = 0x7FF6_0000_0000,
             offset: int = 0x1234, with_exception: bool = True) -> bytes:
    """MDMP header, a stream directory, a ModuleListStream and (optionally) an ExceptionStream."""
    streams = []
    header_size, dir_size = 32, 12 * 2
    data = bytearray()
    data_at = header_size + dir_size
    name = exe.encode("utf-16-le")
    name_rva = data_at
    data += struct.pack("<I", len(name)) + name + b"\0\0"
    modules_rva = data_at + len(data)
    module = bytearray(108)
    struct.pack_into("<QI", module, 0, base, 0x100000)
    struct.pack_into("<I", module, 20, name_rva)
    data += struct.pack("<I", 1) + module
    streams.append((4, 4 + 108, modules_rva))
    if with_exception:
        exc_rva = data_at + len(data)
        exc = bytearray(168)
        struct.pack_into("<II", exc, 0, 1234, 0)
        struct.pack_into("<IIQQ", exc, 8, code, 0, 0, base + offset)
        data += exc
        streams.append((6, 168, exc_rva))
    while len(streams) < 2:
        streams.append((0, 0, 0))  # UnusedStream
    header = b"MDMP" + struct.pack("<IIIIIQ", 0xA793, 2, header_size, 0, 0x5F000000, 0)
    directory = b"".join(struct.pack("<III", *s) for s in streams)
    return header + directory + bytes(data)
