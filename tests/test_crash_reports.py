"""Crash reports as libasan (gcc 12), UBSan, LeakSanitizer, glibc and CPython write them: kind, frames, how
they end. The samples are those tools' own output (addresses kept, paths shortened)."""

import pytest

from conformance.process import crashes

ASAN_HEAP = """=================================================================
==30673==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000018 at pc 0x7f7a8be48061 bp 0x7ffcde5010f0 sp 0x7ffcde5008a0
WRITE of size 16 at 0x602000000018 thread T0
    #0 0x7f7a8be48060 in __interceptor_memcpy ../../../../src/libsanitizer/sanitizer_common/sanitizer_common_interceptors.inc:827
    #1 0x563ecba0c2a3 in parse /tmp/t.c:5
    #2 0x563ecba0c5e7 in main /tmp/t.c:9
    #3 0x7f7a8b445249 in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58
    #4 0x7f7a8b445304 in __libc_start_main_impl ../csu/libc-start.c:360
    #5 0x563ecba0c1a0 in _start (/tmp/t+0x21a0)

0x602000000018 is located 0 bytes to the right of 8-byte region [0x602000000010,0x602000000018)
allocated by thread T0 here:
    #0 0x7f7a8beb89cf in __interceptor_malloc ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:69
    #1 0x563ecba0c285 in parse /tmp/t.c:5

SUMMARY: AddressSanitizer: heap-buffer-overflow ../../../../src/libsanitizer/sanitizer_common/sanitizer_common_interceptors.inc:827 in __interceptor_memcpy
Shadow bytes around the buggy address:
  0x0c047fff7ff0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
=>0x0c047fff8000: fa fa 00[fa]fa fa fa fa fa fa fa fa fa fa fa fa
==30673==ABORTING"""

ASAN_ABRT = """AddressSanitizer:DEADLYSIGNAL
=================================================================
==30675==ERROR: AddressSanitizer: ABRT on unknown address 0x0000000077d3 (pc 0x7f1944ca8eec bp 0x7f1945d117c0 sp 0x7fffddecbf40 T0)
    #0 0x7f1944ca8eec in __pthread_kill_implementation nptl/pthread_kill.c:44
    #1 0x7f1944c59fb1 in __GI_raise ../sysdeps/posix/raise.c:26
    #2 0x7f1944c44471 in __GI_abort stdlib/abort.c:79
    #3 0x558e68ed3683 in main /tmp/t.c:11
    #4 0x7f1944c45249 in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58

AddressSanitizer can not provide additional info.
SUMMARY: AddressSanitizer: ABRT nptl/pthread_kill.c:44 in __pthread_kill_implementation
==30675==ABORTING"""

UBSAN = """t.c:6:62: runtime error: shift exponent 40 is too large for 32-bit type 'int'
    #0 0x560cc12dc34e in shift /tmp/t.c:6
    #1 0x560cc12dc6c3 in main /tmp/t.c:12
    #2 0x7fcd3d445249 in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58
256"""

LSAN = """
=================================================================
==30702==ERROR: LeakSanitizer: detected memory leaks

Direct leak of 33 byte(s) in 1 object(s) allocated from:
    #0 0x7fcfae4b89cf in __interceptor_malloc ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:69
    #1 0x5595e532e6fe in main /tmp/t.c:13

SUMMARY: AddressSanitizer: 33 byte(s) leaked in 1 allocation(s)."""

# faulthandler dumps every thread; the one that crashed is marked current, and need not come first
PYTHON_FATAL = """Fatal Python error: Segmentation fault

Thread 0x00007fc321d9d6c0 (most recent call first):
  File "/srv/conformance/net/runner.py", line 54 in _recv_exactly
  File "/srv/conformance/net/runner.py", line 63 in read_pdu

Current thread 0x00007fc6e52b76c0 (most recent call first):
  File "/usr/lib/python3.11/ctypes/__init__.py", line 519 in string_at
  File "/srv/tests/crashing_host.py", line 56 in planted
  File "/srv/tests/crashing_host.py", line 77 in serve

Extension modules: _cffi_backend (total: 1)"""

PYTHON_CHAINED = """Traceback (most recent call last):
  File "<string>", line 4, in g
  File "<string>", line 2, in f
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "<string>", line 6, in <module>
  File "<string>", line 5, in g
ValueError: invalid literal for int() with base 10: 'zz'
kms server: next request"""


def one(text: str) -> crashes.CrashReport:
    reports, read = crashes.parse(text.splitlines(), final=True)
    assert len(reports) == 1, reports
    return reports[0]


@pytest.mark.parametrize("text,tool,kind,top,fatal,signal", [
    (ASAN_HEAP, "AddressSanitizer", "heap-buffer-overflow", ("parse", "main"), True, None),
    (ASAN_ABRT, "AddressSanitizer", "ABRT", ("main",), True, "SIGABRT"),
    (UBSAN, "UndefinedBehaviorSanitizer", "shift exponent N is too large for N-bit type 'int'", ("shift", "main"),
     False, None),
    (LSAN, "LeakSanitizer", "detected memory leaks", ("main",), True, None),
    (PYTHON_FATAL, "Python", "Segmentation fault", ("string_at", "planted", "serve"), True, "SIGSEGV"),
    (PYTHON_CHAINED, "Python", "ValueError", ("g", "<module>"), False, None),
    ("free(): invalid pointer", "glibc", "free(): invalid pointer", (), True, "SIGABRT"),
    ("*** stack smashing detected ***: terminated", "glibc", "stack smashing detected", (), True, "SIGABRT"),
])
def test_each_report_gives_its_kind_and_the_program_s_own_top_frames(text, tool, kind, top, fatal, signal):
    report = one(text)
    assert (report.tool, report.kind, report.top_frames(), report.fatal, report.signal) == (
        tool, kind, top, fatal, signal)


def test_the_pid_and_the_end_of_a_sanitizer_report_are_read_and_the_lines_after_it_are_not_part_of_it():
    lines = ["vlmcsd: connection from 127.0.0.1", *ASAN_HEAP.splitlines(), "vlmcsd: next"]
    reports, read = crashes.parse(lines)
    assert read == len(lines) and reports[0].pid == 30673
    assert reports[0].text.startswith("==30673==ERROR") and reports[0].text.endswith("==30673==ABORTING")


def test_a_report_still_being_written_is_left_unread_until_it_ends():
    lines = ASAN_HEAP.splitlines()
    cut = lines.index("allocated by thread T0 here:")
    reports, read = crashes.parse(["log line", *lines[:cut]])
    assert reports == [] and read == 2, "read up to the report's first line, which is read again next time"
    assert crashes.parse(lines[:cut], final=True)[0][0].kind == "heap-buffer-overflow"
    # a Python traceback could still be followed by the exception raised while handling it
    tb = PYTHON_CHAINED.splitlines()
    assert crashes.parse(tb[:4])[0] == []
    assert crashes.parse(tb[:4], final=True)[0][0].kind == "KeyError"


def test_reports_of_one_bug_hit_with_other_values_have_the_same_kind_and_other_bugs_another():
    other_size = UBSAN.replace("exponent 40", "exponent 33").replace("0x560cc12dc34e", "0x55aaaaaaaaaa")
    assert one(UBSAN).kind == one(other_size).kind
    assert one(ASAN_HEAP).kind != one(ASAN_ABRT).kind


# py-kms, a thread per connection: its handler's traceback with another thread's log lines in the middle
PYKMS_INTERLEAVED = """----------------------------------------
Exception occurred during processing of request from ('127.0.0.1', 40416)
Traceback (most recent call last):
  File "/usr/lib/python3.11/socketserver.py", line 691, in process_request_thread
    self.finish_request(request, client_address)
Tue, 01 Dec 2026 01:14:03 INFO     RPC bind acknowledged.
  File "/srv/py-kms/pykms_Server.py", line 227, in handle
    rpcResponse = self.RPCHandler.handle()
  File "/srv/py-kms/pykms_RpcBase.py", line 41, in handle
    request = self.parseRequest()
  File "/srv/py-kms/structure.py", line 89, in fromString
    self[field[0]] = self.unpack(field[1], data[:size], dataClassOrCode = dataClassOrCode, field = field[0])
Tue, 01 Dec 2026 01:14:03 INFO     Machine Name: fuzz.example.test
  File "/srv/py-kms/structure.py", line 317, in unpack
    return unpack(format, data)[0]
struct.error: unpack requires a buffer of 2 bytes
----------------------------------------"""


def test_a_traceback_keeps_its_own_lines_when_other_threads_log_in_the_middle_of_it():
    report = one(PYKMS_INTERLEAVED)
    assert (report.kind, report.top_frames()) == ("struct.error", ("unpack", "fromString", "handle"))
    assert "INFO" not in report.text and report.text.endswith("struct.error: unpack requires a buffer of 2 bytes")
