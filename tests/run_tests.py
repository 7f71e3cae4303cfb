#!/usr/bin/env python3
"""Run mnemo's cmocka test programs and summarise the results.

    python3 tests/run_tests.py BUILD_CONFIG_DIR [NAME_FILTER] [--timeout SECONDS]

e.g. `python3 tests/run_tests.py build/release` runs every program in
build/release/tests/; `... build/asan matmul` only those whose name contains
"matmul".  `ninja test`, `ninja test-debug` and `ninja test-asan` call this.

Each program's output is streamed as it runs (cmocka's `[ RUN      ]` /
`[       OK ]` lines list every test).  Counts are per cmocka test, read from
cmocka's `[  PASSED  ] N test(s).` / `[  FAILED  ] N test(s)` summaries (a
program may run several groups).  A program that crashes, times out or exits
non-zero without a failure in its summary counts as one failed test, named
after the program.  The last line is `N passed, N failed` (`, N skipped` when
cmocka skipped any); the exit status is non-zero if anything failed or if no
test ran at all.  Programs run one at a time, from the repository root.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import termios
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PASSED_RE = re.compile(r"^\[  PASSED  \] (\d+) test\(s\)\.")
FAILED_RE = re.compile(r"^\[  FAILED  \] (\d+) test\(s\)")
SKIPPED_RE = re.compile(r"^\[  SKIPPED \] (\d+) test\(s\)")
FAILED_NAME_RE = re.compile(r"^\[  FAILED  \] (?!\d+ test\(s\))(\S.*)$")
RUN_RE = re.compile(r"^\[ RUN      \] (\S.*)$")
DONE_RE = re.compile(r"^\[ +(OK|FAILED|SKIPPED|ERROR) +\] ")

SANITIZER_ENV = {
    # color=never: output goes through a pty (see open_output) but ends up in logs.
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:color=never",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:color=never",
}


def open_output():
    """Returns (read_fd, write_fd) for the child's stdout+stderr.  A pseudo-
    terminal makes the C library line-buffer stdout, so a program that crashes
    still shows what it printed up to the crash, in order with stderr; falls
    back to a plain pipe where no pty can be had."""
    try:
        master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST  # no \n -> \r\n translation
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        return master, slave
    except (OSError, termios.error):
        return os.pipe()


def run_one(path, env, timeout):
    """Runs one program, echoing its output; returns (passed, failed, skipped,
    failed_names, note)."""
    passed = failed = skipped = 0
    names = []
    running = None  # the cmocka test started but not finished, if any
    rfd, wfd = open_output()
    try:
        proc = subprocess.Popen([path], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=wfd, stderr=wfd,
                                start_new_session=True)  # own group: a timeout kills it all
    except BaseException:
        os.close(wfd)
        raise

    def handle(line):
        nonlocal passed, failed, skipped, running
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        m = RUN_RE.match(line)
        if m:
            running = m.group(1)
            return
        if DONE_RE.match(line) and not line.startswith("[  ERROR   ]"):
            running = None
        m = PASSED_RE.match(line)
        if m:
            passed += int(m.group(1))
            return
        m = FAILED_RE.match(line)
        if m:
            failed += int(m.group(1))
            return
        m = SKIPPED_RE.match(line)
        if m:
            skipped += int(m.group(1))
            return
        m = FAILED_NAME_RE.match(line)
        if m and m.group(1) not in names:
            names.append(m.group(1))

    def pump():
        buf = b""
        while True:
            try:
                chunk = os.read(rfd, 65536)
            except OSError:  # EIO: pty closed after the program exited
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                handle(raw.decode("utf-8", "replace").rstrip("\r"))
        if buf:
            handle(buf.decode("utf-8", "replace").rstrip("\r"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    note = ""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        note = "timed out after %d s" % timeout
    # Our copy of the writing end stays open until the program has exited: when the last
    # writer of a pty closes, Linux may drop output the reader has not read yet (here, a
    # program's final lines with its cmocka summary). Closing it now lets the reader drain
    # everything and then see the end.
    os.close(wfd)
    reader.join(10)
    os.close(rfd)

    if rc != 0 and not note:
        note = ("killed by signal %d" % -rc) if rc < 0 else ("exit status %d" % rc)
    if note and running:
        note += ", during test %s" % running
    if note and failed == 0:
        # Crash, sanitizer report at exit, timeout, or a non-cmocka failure:
        # the program as a whole is one failed test.
        failed = 1
        names = []
    elif rc == 0 and passed == 0 and failed == 0 and skipped == 0:
        # Exited 0 without a cmocka summary (not a cmocka program?): count it once.
        passed = 1
        note = "no cmocka summary; counted as 1 test by its exit status"
    return passed, failed, skipped, names, note


def test_programs(cfgdir):
    """The test programs of a configuration, as build.ninja lists them (so
    binaries left behind by deleted tests/test_*.c are not run); falls back to
    every test_* in CFGDIR/tests when build.ninja does not describe CFGDIR."""
    testdir = os.path.join(cfgdir, "tests")
    progs = []
    try:
        with open(os.path.join(ROOT, "build.ninja")) as f:
            for line in f:
                m = re.match(r"^build (\S+/tests/test_\S+): link ", line)
                if m and os.path.dirname(os.path.join(ROOT, m.group(1))) == testdir:
                    progs.append(os.path.join(ROOT, m.group(1)))
    except OSError:
        pass
    if not progs and os.path.isdir(testdir):
        progs = [os.path.join(testdir, n) for n in os.listdir(testdir) if n.startswith("test_")
                 and os.path.isfile(os.path.join(testdir, n))
                 and os.access(os.path.join(testdir, n), os.X_OK)]
    missing = [p for p in progs if not os.path.exists(p)]
    if missing:
        print("run_tests: not built yet (run `ninja` first): " +
              " ".join(os.path.relpath(p, ROOT) for p in missing))
    if not progs:
        print("run_tests: no test programs for %s" % os.path.relpath(cfgdir, ROOT))
    return sorted(progs)


def main():
    ap = argparse.ArgumentParser(description="Run mnemo's cmocka test programs.")
    ap.add_argument("cfgdir", help="build configuration folder, e.g. build/release")
    ap.add_argument("filter", nargs="?", default="",
                    help="only run programs whose name contains this text")
    ap.add_argument("--timeout", type=float, default=600,
                    help="seconds per test program before it is killed (default 600)")
    args = ap.parse_args()

    cfgdir = os.path.normpath(args.cfgdir if os.path.isabs(args.cfgdir)
                              else os.path.join(os.getcwd(), args.cfgdir))
    programs = [p for p in test_programs(cfgdir) if args.filter in os.path.basename(p)]

    env = dict(os.environ)
    env["CMOCKA_MESSAGE_OUTPUT"] = "stdout"  # the format parsed above
    if "asan" in os.path.basename(os.path.normpath(cfgdir)):
        for k, v in SANITIZER_ENV.items():
            env.setdefault(k, v)

    total_p = total_f = total_s = 0
    failures = []
    start = time.monotonic()
    for path in programs:
        name = os.path.basename(path)
        print("=== %s" % os.path.relpath(path, ROOT), flush=True)
        t0 = time.monotonic()
        if os.access(path, os.X_OK):
            p, f, s, names, note = run_one(path, env, args.timeout)
        else:
            p, f, s, names, note = 0, 1, 0, [], "not built"
        total_p, total_f, total_s = total_p + p, total_f + f, total_s + s
        if f:
            failures += ["%s: %s" % (name, n) for n in names] or ["%s (%s)" % (name, note or "failed")]
        print("=== %s: %d passed, %d failed%s (%.1f s)%s" % (
            name, p, f, ", %d skipped" % s if s else "", time.monotonic() - t0,
            " - " + note if note else ""), flush=True)

    print()
    print("%d program(s) in %s, %.1f s" % (len(programs), os.path.relpath(cfgdir, ROOT),
                                           time.monotonic() - start))
    if failures:
        print("Failed:")
        for f in failures:
            print("  " + f)
    if total_p + total_f == 0:
        print("error: no test ran%s" % (" (filter %r)" % args.filter if args.filter else ""))
    print("%d passed, %d failed%s" % (total_p, total_f, ", %d skipped" % total_s if total_s else ""),
          flush=True)
    return 1 if total_f or total_p + total_f == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
