#!/usr/bin/env python3
"""configure.py - probe the toolchain and write build.ninja for mnemo.

Run `./configure.py --help` for the options.  The generated build.ninja is not
committed (every checkout writes its own); paths in it are relative to the
repository root (apart from standard system locations such as the install prefix).

Source layout (globbed each time this script runs; build.ninja re-runs it by
itself when a source folder gains or loses a file):

  tensor/ autograd/ nn/ optim/ lopt/ models/ data/ meta/   library modules -> libmnemo
      every *.c below them (subfolders included) goes into libmnemo.a/.so
      *_avx2.c   gets -mavx2 -mfma
      *_avx512.c gets -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma
  mnemo.h, DIR/DIR.h                            public headers (installed)
  tests/test_*.c                                one cmocka program each
  tests/*.c (other)                             helpers linked into every test
  bench/*.c, examples/*.c                       one program each
  bench/common/*.c, examples/common/*.c         helpers linked into each
                                                program of that folder
                                                (bench programs get both)
Python 3 standard library only.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

VERSION = "0.1.0"
SO_NAME = "libmnemo.so.%s" % VERSION.split(".")[0]  # bumped when the ABI changes
SO_REAL = "libmnemo.so.%s" % VERSION

# Library module folders, in link order.  Only the ones that exist are used.
MODULES = ["tensor", "autograd", "nn", "optim", "lopt", "models", "data", "meta"]

# Program folders: NAME/*.c -> one program each; NAME/common/*.c is linked
# into every program of NAME.
PROGRAM_DIRS = ["bench", "examples"]

CONFIGS = ["release", "debug", "asan"]

# ---------------------------------------------------------------------------
# Flags.  Baseline x86-64 everywhere so one binary runs on any x86-64 CPU; the
# wider ISAs are confined to *_avx2.c / *_avx512.c and chosen at run time
# (tensor/cpu.c).
COMMON_CFLAGS = ("-std=c11 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers "
                 "-fopenmp -D_GNU_SOURCE -march=x86-64 -mtune=generic -fPIC -fvisibility=hidden -I.")
CONFIG_CFLAGS = {
    "release": "-O3 -g0",
    "debug": "-O0 -g",
    "asan": "-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined "
            "-fno-sanitize-recover=undefined",
}
CONFIG_LDFLAGS = {
    "release": "",
    "debug": "",
    "asan": "-fsanitize=address,undefined -fno-sanitize-recover=undefined",
}
AVX2_FLAGS = "-mavx2 -mfma"
AVX512_FLAGS = "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma"
LIBS = "-fopenmp -lsleef -ljansson -lutf8proc -lz -lm"
TEST_LIBS = "-lcmocka"

# ---------------------------------------------------------------------------
# Dependency probes.  kind: "required" (configure fails without it),
# "recommended" (installed by --install-deps, only a warning otherwise),
# "optional" (reported, never installed automatically); "unchecked" marks a
# library probe skipped for want of a compiler (re-probed after installing one).

PROG_OPENMP = r"""
#include <omp.h>
int main(void) {
    int n = 0;
#pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 && omp_get_max_threads() > 0 ? 0 : 1;
}
"""
PROG_SLEEF = r"""
#include <sleef.h>
int main(void) { return Sleef_expf_u10(0.0f) == 1.0f ? 0 : 1; }
"""
PROG_CMOCKA = r"""
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
static void t(void **state) { (void)state; assert_true(1); }
int main(void) {
    const struct CMUnitTest tests[] = { cmocka_unit_test(t) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
"""
PROG_STB = r"""
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
int main(void) { int w, h, c; return stbi_info("/nonexistent", &w, &h, &c); }
"""
PROG_ZLIB = r"""
#include <zlib.h>
int main(void) { return zlibVersion()[0] ? 0 : 1; }
"""
PROG_JANSSON = r"""
#include <jansson.h>
int main(void) { json_t *o = json_object(); int ok = o != NULL; json_decref(o); return !ok; }
"""
PROG_UTF8PROC = r"""
#include <utf8proc.h>
int main(void) { return utf8proc_tolower(0x41) != 0x61 || utf8proc_category(0x2C) != UTF8PROC_CATEGORY_PO; }
"""
PROG_MPI = r"""
#include <mpi.h>
int main(int argc, char **argv) { int n = 0; MPI_Init(&argc, &argv); MPI_Comm_size(MPI_COMM_WORLD, &n); MPI_Finalize(); return n < 1; }
"""


def mpi_flags():
    """OpenMPI's compile and link flags: pkg-config's ompi-c, else Debian's fixed locations."""
    if shutil.which("pkg-config"):
        try:
            c = subprocess.run(["pkg-config", "--cflags", "ompi-c"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, universal_newlines=True)
            l = subprocess.run(["pkg-config", "--libs", "ompi-c"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, universal_newlines=True)
            if c.returncode == 0 and l.returncode == 0:
                return c.stdout.strip(), l.stdout.strip()
        except OSError:
            pass
    inc = "/usr/lib/x86_64-linux-gnu/openmpi/include"
    return "-I%s -I%s/openmpi" % (inc, inc), "-L/usr/lib/x86_64-linux-gnu/openmpi/lib -lmpi"


PROG_C11 = r"""
#if !defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L
#error "not C11"
#endif
#include <stdalign.h>
_Static_assert(sizeof(void *) == 8, "64-bit target expected");
int main(void) { alignas(64) float x[16] = {0}; return (int)x[0]; }
"""
PROG_AVX512 = r"""
#include <immintrin.h>
__m512 f(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
int main(void) { return 0; }
"""


def log(msg=""):
    print(msg, flush=True)


class Prober:
    """Compiles and links tiny programs with the chosen compiler."""

    def __init__(self, cc):
        self.cc = cc
        self.tmp = tempfile.mkdtemp(prefix="mnemo-configure-")

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def try_build(self, source, cflags="", libs="", link=True):
        src = os.path.join(self.tmp, "probe.c")
        out = os.path.join(self.tmp, "probe" if link else "probe.o")
        with open(src, "w") as f:
            f.write(source)
        cmd = ([self.cc] + shlex.split("-std=c11 -D_GNU_SOURCE") + shlex.split(cflags) +
               ([] if link else ["-c"]) + [src, "-o", out] + (shlex.split(libs) if link else []))
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        return r.returncode == 0, r.stdout.strip()


def compiler_package(cc):
    name = os.path.basename(cc)
    return "clang" if name.startswith("clang") else "gcc"


def run_probes(cc):
    """Returns a list of dicts: name, package, kind, checked, ok, detail."""
    results = []
    prober = Prober(cc)

    def add(name, package, kind, checked, ok, detail=""):
        results.append(dict(name=name, package=package, kind=kind, checked=checked,
                            ok=bool(ok), detail=detail))
        status = "found" if ok else ("not checked" if kind == "unchecked" else "MISSING")
        extra = "" if ok or kind == "unchecked" else "  -> Debian package %s%s" % (
            package, "" if kind == "required" else " (%s)" % kind)
        log("  %-14s %-62s %s%s" % (name, checked, status, extra))
        if not ok and detail and kind == "required":
            for line in detail.splitlines()[:4]:
                log("      | " + line)

    try:
        cc_path = shutil.which(cc)
        ok, detail = (False, "%s not found in PATH" % cc)
        if cc_path:
            ok, detail = prober.try_build(PROG_C11)
            if ok:  # the per-file ISA flags must be accepted too
                ok, detail = prober.try_build(PROG_AVX512, AVX512_FLAGS, link=False)
        add("C compiler", compiler_package(cc), "required",
            "%s: C11 program + %s" % (cc, "-mavx512* flags"), ok, detail)

        ninja = shutil.which("ninja")
        ver = ""
        if ninja:
            try:
                ver = subprocess.run([ninja, "--version"], stdout=subprocess.PIPE,
                                     universal_newlines=True).stdout.strip()
            except OSError:
                ninja = None
        ok = bool(ninja) and tuple(int(x) for x in ver.split(".")[:2] if x.isdigit()) >= (1, 10)
        add("ninja", "ninja-build", "required", "ninja >= 1.10 in PATH" + (" (%s)" % ver if ver else ""), ok)

        checks = [
            ("OpenMP", "gcc", "-fopenmp program, compile+link+run", PROG_OPENMP, "-fopenmp", "-fopenmp"),
            ("SLEEF", "libsleef-dev", "<sleef.h> + -lsleef, compile+link", PROG_SLEEF, "", "-lsleef -lm"),
            ("cmocka", "libcmocka-dev", "<cmocka.h> + -lcmocka, compile+link", PROG_CMOCKA, "", "-lcmocka"),
            ("stb", "libstb-dev", "<stb/stb_image.h> implementation, compile+link", PROG_STB, "", "-lm"),
            ("zlib", "zlib1g-dev", "<zlib.h> + -lz, compile+link", PROG_ZLIB, "", "-lz"),
            ("jansson", "libjansson-dev", "<jansson.h> + -ljansson, compile+link", PROG_JANSSON, "", "-ljansson"),
            ("utf8proc", "libutf8proc-dev", "<utf8proc.h> + -lutf8proc, compile+link", PROG_UTF8PROC, "", "-lutf8proc"),
        ]
        have_cc = results[0]["ok"]
        for name, pkg, what, src, cflags, libs in checks:
            if name == "OpenMP" and compiler_package(cc) == "clang":
                pkg = "libomp-dev"
            if not have_cc:  # cannot tell yet; checked again once a compiler is installed
                add(name, pkg, "unchecked", what + " (needs a C compiler)", False)
                continue
            ok, detail = prober.try_build(src, cflags, libs)
            if ok and name == "OpenMP":  # also make sure the runtime loads
                r = subprocess.run([os.path.join(prober.tmp, "probe")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                ok = r.returncode == 0
                detail = "" if ok else "OpenMP test program failed to run"
            add(name, pkg, "required", what, ok, detail)
    finally:
        prober.close()

    add("pkg-config", "pkg-config", "recommended", "pkg-config in PATH (to use the installed mnemo.pc)",
        shutil.which("pkg-config"))
    # MPI: meta-training across processes and machines. The build works without it (one process).
    if results[0]["ok"]:
        prober = Prober(cc)
        try:
            cflags, libs = mpi_flags()
            ok, detail = prober.try_build(PROG_MPI, cflags, libs, link=True)
        finally:
            prober.close()
        add("MPI", "libopenmpi-dev", "recommended", "<mpi.h> + -lmpi (OpenMPI), compile+link", ok, detail)
        if ok:
            results[-1]["cflags"], results[-1]["libs"] = cflags, libs
    add("mpirun", "openmpi-bin", "recommended", "mpirun in PATH (several processes or machines)",
        shutil.which("mpirun"))
    fm = "/usr/share/datasets/fashion-mnist"
    fm_files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    add("fashion-mnist", "dataset-fashion-mnist", "recommended", fm + "/{train,t10k}-*.gz",
        all(os.path.isfile(os.path.join(fm, f)) for f in fm_files))
    fort = "/usr/share/games/fortunes"
    add("fortunes", "fortunes", "recommended", fort + "/{art,computers,science}",
        all(os.path.isfile(os.path.join(fort, f)) for f in ["art", "computers", "science"]))
    add("fortunes-min", "fortunes-min", "recommended", fort + "/{fortunes,literature,riddles}",
        all(os.path.isfile(os.path.join(fort, f)) for f in ["fortunes", "literature", "riddles"]))
    # For the libFuzzer targets in tests/fuzz/ (later): never installed automatically.
    add("clang", "clang", "optional", "clang in PATH (fuzzing only)", shutil.which("clang"))
    rt = "/usr/lib/llvm-14/lib/clang"
    has_rt = False
    if os.path.isdir(rt):
        for v in os.listdir(rt):
            if os.path.isfile(os.path.join(rt, v, "lib/linux/libclang_rt.fuzzer-x86_64.a")):
                has_rt = True
    add("libFuzzer", "libclang-rt-14-dev", "optional", rt + "/*/lib/linux/libclang_rt.fuzzer-x86_64.a",
        has_rt)
    return results


# Wait for a dpkg lock held by another apt run (e.g. unattended-upgrades)
# instead of failing at once.
APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=600"]


def apt_line(packages, sudo=False):
    return ("sudo " if sudo else "") + \
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends " + " ".join(packages)


def install_packages(packages):
    """apt-get install as root; returns True when apt-get succeeded."""
    log("\nInstalling missing packages:")
    log("+ apt-get %s update" % " ".join(APT_LOCK_WAIT))
    r = subprocess.run(["apt-get"] + APT_LOCK_WAIT + ["update"])
    if r.returncode != 0:
        log("warning: apt-get update failed (exit %d); trying the install anyway" % r.returncode)
    log("+ " + apt_line(packages).replace("apt-get", "apt-get " + " ".join(APT_LOCK_WAIT), 1))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get"] + APT_LOCK_WAIT + ["install", "-y", "--no-install-recommends"] + packages,
                       env=env)
    return r.returncode == 0


def check_dependencies(args):
    log("Checking dependencies (compiler: %s):" % args.cc)
    results = run_probes(args.cc)

    def missing(kinds):
        return [r for r in results if not r["ok"] and r["kind"] in kinds]

    # Up to three rounds: libraries can only be checked once a compiler is there.
    tried = set()
    for _ in range(3):
        wanted = sorted({r["package"] for r in missing(("required", "recommended"))} - tried)
        if not (args.install_deps and wanted):
            break
        if os.geteuid() != 0:
            log("\nNot root: install the missing packages with\n  %s" % apt_line(wanted, sudo=True))
            sys.exit(1)
        if not install_packages(wanted):
            log("error: apt-get install failed")
            sys.exit(1)
        tried.update(wanted)
        log("\nRe-checking after the install:")
        results = run_probes(args.cc)

    missing_req = missing(("required", "unchecked"))
    missing_rec = missing(("recommended",))
    if missing_req:
        pkgs = sorted({r["package"] for r in missing_req + missing_rec})
        log("\nerror: missing required dependencies: %s" % ", ".join(r["name"] for r in missing_req))
        log("Install them with (or run ./configure.py --install-deps as root):")
        log("  " + apt_line(pkgs, sudo=os.geteuid() != 0))
        sys.exit(1)
    if missing_rec:
        log("\nwarning: missing %s (tests using them may fail); install with\n  %s" % (
            ", ".join(r["name"] for r in missing_rec),
            apt_line(sorted({r["package"] for r in missing_rec}), sudo=os.geteuid() != 0)))
    return results


# ---------------------------------------------------------------------------
# Source discovery.  All paths are relative to the repo root with '/'.

def rel(*parts):
    return "/".join(p for p in parts if p and p != ".")


def c_files(folder, recursive=False):
    """Sorted *.c files in folder (repo-relative), plus the folders visited."""
    files, dirs = [], []
    if not os.path.isdir(folder):
        return files, dirs
    if recursive:
        for root, subdirs, names in os.walk(folder):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            dirs.append(root.replace(os.sep, "/"))
            files += [rel(root.replace(os.sep, "/"), n) for n in names if n.endswith(".c")]
    else:
        dirs.append(folder)
        files = [rel(folder, n) for n in os.listdir(folder)
                 if n.endswith(".c") and os.path.isfile(os.path.join(folder, n))]
    return sorted(files), dirs


def public_headers():
    """mnemo.h, each DIR/DIR.h, and every project header they include in turn
    (`#include "x"`, resolved beside the includer, then from the root), so an
    installed public header never includes a file that was not installed."""
    roots = [h for h in ["mnemo.h"] + ["%s/%s.h" % (m, m) for m in MODULES] if os.path.isfile(h)]
    seen, queue, extra = set(), list(roots), []
    while queue:
        h = queue.pop(0)
        if h in seen:
            continue
        seen.add(h)
        try:
            with open(h, errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            s = line.strip()
            if not s.startswith("#"):
                continue
            s = s[1:].strip()
            if not s.startswith("include") or '"' not in s:
                continue
            name = s.split('"')[1]
            for cand in (os.path.normpath(os.path.join(os.path.dirname(h), name)), os.path.normpath(name)):
                cand = cand.replace(os.sep, "/")
                if not cand.startswith("..") and os.path.isfile(cand):
                    if cand not in seen and cand not in queue:
                        queue.append(cand)
                        if cand not in roots:
                            extra.append((cand, h))
                    break
    return sorted(seen), extra


def discover():
    src = {"lib": [], "tests": [], "test_helpers": [], "programs": {}, "watch": ["."]}
    for m in MODULES:
        files, dirs = c_files(m, recursive=True)
        src["lib"] += files
        src["watch"] += dirs
    files, dirs = c_files("tests")
    src["watch"] += dirs
    src["tests"] = [f for f in files if os.path.basename(f).startswith("test_")]
    src["test_helpers"] = [f for f in files if not os.path.basename(f).startswith("test_")]
    for d in PROGRAM_DIRS:
        files, dirs = c_files(d)
        common, cdirs = c_files(rel(d, "common"))
        src["watch"] += dirs + cdirs
        src["programs"][d] = (files, common)
    src["headers"], src["extra_headers"] = public_headers()
    return src


# ---------------------------------------------------------------------------
# build.ninja writer.

def esc(path):
    """Escape a path for a ninja build line."""
    return path.replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def incbin_files(path):
    """Files a source embeds with MN_INCBIN(symbol, "file") (an assembler .incbin, see
    lopt/pretrained.c): the compiler's depfile misses them, so they become implicit inputs."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return sorted(set(re.findall(r'MN_INCBIN\(\s*\w+\s*,\s*"([^"]+)"\s*\)', f.read())))


def isa_flags(path):
    name = os.path.basename(path)
    if name.endswith("_avx512.c"):
        return "$avx512_flags"
    if name.endswith("_avx2.c"):
        return "$avx2_flags"
    return ""


def program_name(path):
    return os.path.splitext(os.path.basename(path))[0]


class Ninja:
    def __init__(self):
        self.lines = []

    def __call__(self, line=""):
        self.lines.append(line)

    def comment(self, text):
        for t in text.strip("\n").splitlines():
            self.lines.append(("# " + t).rstrip())

    def var(self, name, value, indent=False):
        self.lines.append("%s%s = %s" % ("  " if indent else "", name, value))

    def build(self, outputs, rule, inputs=(), implicit=(), order_only=(), variables=None):
        line = "build %s: %s" % (" ".join(esc(o) for o in outputs), rule)
        if inputs:
            line += " " + " ".join(esc(i) for i in inputs)
        if implicit:
            line += " | " + " ".join(esc(i) for i in implicit)
        if order_only:
            line += " || " + " ".join(esc(i) for i in order_only)
        self.lines.append(line)
        for k, v in (variables or {}).items():
            self.var(k, v, indent=True)

    def text(self):
        return "\n".join(self.lines) + "\n"


def write_ninja(args, src, configure_args, probes):
    bd = args.builddir
    n = Ninja()
    n.comment("""
build.ninja for mnemo - GENERATED by configure.py; do not edit, re-run configure.py.
It regenerates itself when configure.py changes or a source folder gains or
loses a file (re-running configure.py with the arguments stored in
$configure_args below).

Targets:
  ninja               release library + tests + bench + examples (%(bd)s/release)
  ninja debug | asan  the same for %(bd)s/debug (-O0 -g) or %(bd)s/asan (ASan+UBSan)
  ninja all           all three configurations
  ninja test          build release, run every tests/test_* program
  ninja test-debug | test-asan   likewise for the other configurations
  ninja demo          build release, run %(bd)s/release/examples/demo
  ninja install       install headers, libmnemo.{a,so} and mnemo.pc under $prefix
                      (honours $DESTDIR); ninja uninstall removes them
Subset of tests: python3 tests/run_tests.py %(bd)s/release [name-filter]
""" % {"bd": bd})
    n()
    n.var("ninja_required_version", "1.10")
    n.comment("ninja's own .ninja_log/.ninja_deps live here, not in the source root.")
    n.var("builddir", bd)
    n.var("configure_args", " ".join(shlex.quote(a) for a in configure_args))
    n.var("cc", args.cc)
    n.var("prefix", args.prefix)
    n.var("version", VERSION)
    mpi = next((p for p in probes if p.get("name") == "MPI" and p.get("ok")), None)
    n.comment("MPI (OpenMPI) %s" % ("found: meta-training across processes" if mpi else "not found: one process"))
    n.var("common_cflags", COMMON_CFLAGS + (" -DMN_HAVE_MPI " + mpi["cflags"] if mpi else ""))
    n.var("avx2_flags", AVX2_FLAGS)
    n.var("avx512_flags", AVX512_FLAGS)
    n.var("libs", LIBS + (" " + mpi["libs"] if mpi else ""))
    n.var("pc_libs", "-fopenmp -lsleef -ljansson -lutf8proc -lz -lm" + (" " + mpi["libs"] if mpi else ""))
    n.var("test_libs", TEST_LIBS)
    for c in CONFIGS:
        n.var("%s_cflags" % c, "$common_cflags " + CONFIG_CFLAGS[c])
        n.var("%s_ldflags" % c, CONFIG_LDFLAGS[c])  # -fopenmp is in $libs
    n()
    n.comment("---- rules")
    n("rule cc")
    n.var("command", "$cc -MMD -MF $out.d $cflags $isaflags -c $in -o $out", indent=True)
    n.var("depfile", "$out.d", indent=True)
    n.var("deps", "gcc", indent=True)
    n.var("description", "CC $out", indent=True)
    n()
    n.comment("rm first: ar would otherwise keep members of deleted sources.")
    n("rule ar")
    n.var("command", "rm -f $out && ar crs $out $in", indent=True)
    n.var("description", "AR $out", indent=True)
    n()
    n("rule shlib")
    # libmnemo.so.X.Y.Z with soname libmnemo.so.X (X: the ABI's major version), and the two links
    n.var("command", "$cc -shared -o $dir/$realname $in $ldflags -Wl,-soname,$soname $libs"
          " && ln -sfn $realname $dir/$soname && ln -sfn $soname $dir/libmnemo.so", indent=True)
    n.var("description", "SO $dir/$realname", indent=True)
    n()
    n("rule link")
    n.var("command", "$cc -o $out $in $ldflags $extra_libs $libs", indent=True)
    n.var("description", "LINK $out", indent=True)
    n()
    n.comment("Listed inputs are the configure script and every source folder: a folder's\n"
              "mtime changes when an entry is added or removed, so new files get picked up.")
    n("rule configure")
    n.var("command", "python3 configure.py $configure_args --regenerate", indent=True)
    n.var("generator", "1", indent=True)
    n.var("description", "Regenerating build.ninja (configure.py $configure_args)", indent=True)
    n()
    n.comment("Outputs of the rules below are never created, so they run every time.")
    n("rule run_tests")
    n.var("command", "python3 tests/run_tests.py $cfgdir", indent=True)
    n.var("description", "Running tests in $cfgdir", indent=True)
    n.var("pool", "console", indent=True)
    n()
    n("rule run")
    n.var("command", "$cmd", indent=True)
    n.var("description", "$desc", indent=True)
    n.var("pool", "console", indent=True)
    n()
    n("rule pkgconfig")
    n.var("command", "sed -e 's|@prefix@|$prefix|g' -e 's|@version@|$version|g' -e 's|@libs@|$pc_libs|g' $in > $out",
          indent=True)
    n.var("description", "GEN $out", indent=True)
    n()

    n.comment("---- regeneration")
    watch = sorted(set(src["watch"]))
    n.build(["build.ninja"], "configure", implicit=["configure.py"] + watch)
    n()

    default_targets = None
    for c in CONFIGS:
        out = "%s/%s" % (bd, c)
        obj = lambda path: "%s/obj/%s.o" % (out, path[:-2])
        n.comment("---- configuration %s: %s" % (c, CONFIG_CFLAGS[c]))
        cvars = lambda path: dict([("cflags", "$%s_cflags" % c)] +
                                  ([("isaflags", isa_flags(path))] if isa_flags(path) else []))
        all_sources = (src["lib"] + src["tests"] + src["test_helpers"] +
                       [f for d in PROGRAM_DIRS for f in src["programs"][d][0] + src["programs"][d][1]])
        for f in all_sources:
            n.build([obj(f)], "cc", [f], implicit=incbin_files(f), variables=cvars(f))
        lib_objs = [obj(f) for f in src["lib"]]
        liba, libso = "%s/libmnemo.a" % out, "%s/libmnemo.so" % out
        n.build([liba], "ar", lib_objs)
        n.build(["%s/%s" % (out, SO_REAL), "%s/%s" % (out, SO_NAME), libso], "shlib", lib_objs,
                variables={"ldflags": "$%s_ldflags" % c, "dir": out, "realname": SO_REAL, "soname": SO_NAME})
        targets = [liba, libso]
        tests = []
        helpers = [obj(f) for f in src["test_helpers"]]
        # tests of the benchmark helpers (tests/test_bench_*.c) link them too
        bench_objs = [obj(f) for f in src["programs"]["bench"][1] + src["programs"]["examples"][1]]
        for t in src["tests"]:
            exe = "%s/tests/%s" % (out, program_name(t))
            extra = bench_objs if program_name(t).startswith("test_bench_") else []
            n.build([exe], "link", [obj(t)] + helpers + extra + [liba],
                    variables={"ldflags": "$%s_ldflags" % c, "extra_libs": "$test_libs"})
            tests.append(exe)
        targets += tests
        for d in PROGRAM_DIRS:
            progs, common = src["programs"][d]
            if d == "bench":
                # benchmarks reuse the programs' helpers (options, progress, plots)
                common = common + src["programs"]["examples"][1]
            common_objs = [obj(f) for f in common]
            for p in progs:
                exe = "%s/%s/%s" % (out, d, program_name(p))
                n.build([exe], "link", [obj(p)] + common_objs + [liba],
                        variables={"ldflags": "$%s_ldflags" % c})
                targets.append(exe)
        n.build([c], "phony", targets)
        suffix = "" if c == "release" else "-" + c
        n.build(["test" + suffix], "run_tests", implicit=[c], variables={"cfgdir": out})
        if c == "release":
            default_targets = [c]
        n()

    n.comment("---- demo: examples/demo.c is built and run from the repo root")
    demo_exe = "%s/release/examples/demo" % bd
    if "examples/demo.c" in src["programs"]["examples"][0]:
        n.build(["demo"], "run", implicit=[demo_exe],
                variables={"cmd": "./" + demo_exe, "desc": "Running " + demo_exe})
    else:
        # Parses fine; build.ninja regenerates itself once examples/demo.c appears.
        n.build(["demo"], "run", variables={
            "cmd": "echo 'examples/demo.c does not exist yet; nothing to run' >&2; false",
            "desc": "demo (missing)"})
    n()

    n.comment("---- install (DESTDIR=/staging ninja install works too)")
    pc = "%s/mnemo.pc" % bd
    n.build([pc], "pkgconfig", ["mnemo.pc.in"], implicit=["build.ninja"])
    dest = "$${DESTDIR}$prefix"
    cmds, removed = [], []
    for h in src["headers"]:
        cmds.append("install -v -D -m 644 %s %s/include/mnemo/%s" % (h, dest, h))
        removed.append("%s/include/mnemo/%s" % (dest, h))
    for f, mode in [("%s/release/libmnemo.a" % bd, "644"), ("%s/release/%s" % (bd, SO_REAL), "755")]:
        cmds.append("install -v -D -m %s %s %s/lib/%s" % (mode, f, dest, os.path.basename(f)))
        removed.append("%s/lib/%s" % (dest, os.path.basename(f)))
    for link, target in [(SO_NAME, SO_REAL), ("libmnemo.so", SO_NAME)]:
        cmds.append("ln -sfnv %s %s/lib/%s" % (target, dest, link))
        removed.append("%s/lib/%s" % (dest, link))
    cmds.append("install -v -D -m 644 %s %s/lib/pkgconfig/mnemo.pc" % (pc, dest))
    removed.append("%s/lib/pkgconfig/mnemo.pc" % dest)
    n.build(["install"], "run", implicit=["%s/release/libmnemo.a" % bd, "%s/release/libmnemo.so" % bd, pc],
            variables={"cmd": " && ".join(cmds),
                       "desc": "Installing to $${DESTDIR}$prefix"})
    n.build(["uninstall"], "run", variables={
        "cmd": "rm -fv " + " ".join(removed) +
               " && (find %s/include/mnemo -depth -type d -empty -delete 2>/dev/null || true)" % dest,
        "desc": "Uninstalling from $${DESTDIR}$prefix"})
    n()
    n.build(["all"], "phony", CONFIGS)
    n("default " + " ".join(default_targets))
    return n.text()


def write_compile_commands(args, src):
    """build/compile_commands.json (release flags) for clangd and friends;
    clangd looks in build/ by itself.  Not committed: it has absolute paths."""
    root = os.path.abspath(".")
    flags = "%s %s" % (COMMON_CFLAGS, CONFIG_CFLAGS["release"])
    entries = []
    files = (src["lib"] + src["tests"] + src["test_helpers"] +
             [f for d in PROGRAM_DIRS for f in src["programs"][d][0] + src["programs"][d][1]])
    for f in files:
        isa = {"$avx2_flags": AVX2_FLAGS, "$avx512_flags": AVX512_FLAGS}.get(isa_flags(f), "")
        out = "%s/release/obj/%s.o" % (args.builddir, f[:-2])
        entries.append({"directory": root, "file": f,
                        "command": "%s %s %s -c %s -o %s" % (args.cc, flags, isa, f, out)})
    with open(os.path.join(args.builddir, "compile_commands.json"), "w") as fp:
        json.dump(entries, fp, indent=1)


def write_if_changed(path, text):
    """Rewrite in place (never via rename): replacing build.ninja through a new
    directory entry would bump the root folder's mtime past build.ninja's and
    make ninja regenerate forever."""
    try:
        with open(path) as f:
            if f.read() == text:
                os.utime(path)  # still mark it up to date for ninja
                return False
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(text)
    return True


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="configure.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check mnemo's build dependencies and write build.ninja.\n\n"
                    "Typical use:\n"
                    "  ./configure.py --install-deps   # as root: apt-get whatever is missing\n"
                    "  ninja                           # release lib, tests, bench, examples\n"
                    "  ninja test                      # ...and run the cmocka tests",
        epilog="Targets in the generated build.ninja:\n"
               "  ninja               release build (build/release): libmnemo.a/.so, tests, bench, examples\n"
               "  ninja debug         same with -O0 -g (build/debug)\n"
               "  ninja asan          same with AddressSanitizer+UBSan (build/asan)\n"
               "  ninja all           all three\n"
               "  ninja test          build release and run every tests/test_* program\n"
               "  ninja test-debug    ... for debug;  ninja test-asan  ... for asan\n"
               "  ninja demo          build release and run build/release/examples/demo\n"
               "  ninja install       install to --prefix (DESTDIR honoured); ninja uninstall\n"
               "  python3 tests/run_tests.py build/release [filter]   run a subset of tests\n\n"
               "build.ninja re-runs this script (with the same options) when configure.py\n"
               "changes or a source folder gains or loses a file.")
    p.add_argument("--prefix", default="/usr/local", metavar="DIR",
                   help="where `ninja install` puts include/mnemo/, lib/libmnemo.{a,so} "
                        "and lib/pkgconfig/mnemo.pc (default: %(default)s)")
    p.add_argument("--cc", default=os.environ.get("CC") or "gcc", metavar="CC",
                   help="C compiler to build with (default: $CC, else gcc)")
    p.add_argument("--builddir", default="build", metavar="DIR",
                   help="output folder, relative to the repo root; configurations go in "
                        "DIR/release, DIR/debug, DIR/asan (default: %(default)s)")
    p.add_argument("--install-deps", action="store_true",
                   help="install missing Debian packages: as root runs `apt-get update` and "
                        "`apt-get install -y --no-install-recommends ...`; otherwise prints "
                        "the sudo command and exits 1")
    p.add_argument("--regenerate", action="store_true",
                   help="skip the dependency checks and just rewrite build.ninja (used by "
                        "build.ninja's own regeneration rule)")
    return p.parse_args(argv)


def main(argv):
    # Everything is relative to the repository root, wherever we were called from.
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    args = parse_args(argv)
    args.builddir = os.path.normpath(args.builddir).replace(os.sep, "/")
    if args.builddir in (".", "") or args.builddir.startswith(".."):
        sys.exit("error: --builddir must be a subfolder of the repository")

    # Arguments repeated on regeneration: everything but --install-deps and
    # --regenerate, and defaults are left out so a plain ./configure.py gives a
    # machine-independent build.ninja.
    configure_args = []
    if args.prefix != "/usr/local":
        configure_args += ["--prefix", args.prefix]
    if args.cc != "gcc":
        configure_args += ["--cc", args.cc]
    if args.builddir != "build":
        configure_args += ["--builddir", args.builddir]

    probes = None
    if not args.regenerate:
        probes = check_dependencies(args)

    src = discover()
    os.makedirs(args.builddir, exist_ok=True)
    config = {"configure_args": configure_args, "prefix": args.prefix, "cc": args.cc,
              "builddir": args.builddir, "version": VERSION}
    if probes is not None:
        config["probes"] = probes
    else:  # keep the last full probe results
        try:
            with open(os.path.join(args.builddir, "config.json")) as f:
                config["probes"] = json.load(f).get("probes", [])
        except (OSError, ValueError):
            pass
    with open(os.path.join(args.builddir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    write_compile_commands(args, src)
    # build.ninja last: ninja compares its mtime with the watched folders.
    changed = write_if_changed("build.ninja", write_ninja(args, src, configure_args, config.get("probes", [])))
    # (After a manual run, ninja may still regenerate once: its log remembers
    # build.ninja's mtime from its own last regeneration.  Harmless and fast.)

    n_progs = sum(len(p[0]) for p in src["programs"].values())
    log("%s build.ninja: %d library sources, %d tests, %d bench/example programs, "
        "%d public headers" % ("Wrote" if changed else "Unchanged", len(src["lib"]), len(src["tests"]),
                               n_progs, len(src["headers"])))
    for h, by in src["extra_headers"]:
        log("  note: installing %s too (included by public header %s)" % (h, by))
    if not args.regenerate:
        log("Next: ninja (build), ninja test (run tests); see ./configure.py --help for targets.")


if __name__ == "__main__":
    main(sys.argv[1:])
