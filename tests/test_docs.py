"""Docs and code in lockstep (STYLE.md guideline 20).

Every key the real binary knows (`roomd -T`) has an entry in man/roomd.conf.5
and a line in conf/roomd.conf, in the same order, and nothing else is
documented; the defaults, ranges and restart marks written there match the
option table in src/config.c; every flag of the `roomd -h` usage line is in
man/roomd.8 OPTIONS and the SYNOPSIS renders to the usage line; every man page
names only keys that exist and passes `mandoc -Tlint -Wwarning`; and
conf/roomd.conf passes `roomd -t` and parses to exactly the built-in defaults.

The built-in defaults are taken from `roomd -T -c /dev/null` rather than from
a bare `roomd -T`, which would read SYSCONFDIR/roomd.conf if one is installed.
"""
import difflib
import functools
import os
import re
import subprocess

import pytest

from roomd import ROOMD_BIN

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, ".."))
MANDIR = os.path.join(TOP, "man")
MAN8 = os.path.join(MANDIR, "roomd.8")
MAN5 = os.path.join(MANDIR, "roomd.conf.5")
PAGES = sorted({MAN8, MAN5} | {os.path.join(MANDIR, f) for f in os.listdir(MANDIR)
                               if re.fullmatch(r"[\w.-]+\.[1-9]", f)})
CONF = os.path.join(TOP, "conf", "roomd.conf")
CONFIG_C = os.path.join(TOP, "src", "config.c")

NUMERIC_TYPES = ("OPT_INT", "OPT_SIZE", "OPT_DURATION")
BUILT = object()    # a default fixed when roomd is built (a macro in options[], or computed)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def roomd(*args):
    """Run the binary; returns the CompletedProcess (text)."""
    return subprocess.run([ROOMD_BIN, *args], capture_output=True, text=True, timeout=10,
                          cwd=TOP)


def roomd_dump(*args):
    """stdout of `roomd -T ARGS`, which must succeed."""
    r = roomd("-T", *args)
    assert r.returncode == 0, f"roomd -T {' '.join(args)} failed: {r.stderr}"
    return r.stdout


@functools.lru_cache(maxsize=None)
def default_dump():
    return roomd_dump("-c", os.devnull)


def dump_diff(got, want, got_name, want_name):
    return "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), want_name, got_name))


def dump_keys(text):
    """Keys of a -T dump in order, each once ("key value" and "# key (unset)" lines)."""
    keys = []
    for line in text.splitlines():
        m = re.fullmatch(r"# (\w+) \(unset\)", line) or re.match(r"(\w+) \S", line)
        assert m, f"unexpected line in roomd -T output: {line!r}"
        if m.group(1) not in keys:
            keys.append(m.group(1))
    return keys


@functools.lru_cache(maxsize=None)
def known_keys():
    keys = dump_keys(default_dump())
    assert len(keys) >= 10, f"roomd -T printed too few keys: {keys}"
    return keys


@functools.lru_cache(maxsize=None)
def option_table():
    """{name: (type, min, max, default, needs_restart)} from options[] in src/config.c.

    default is a string, None (NULL: unset or computed) or BUILT (a macro)."""
    src = read(CONFIG_C)
    body = re.search(r"options\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    assert body, "cannot find the options[] table in src/config.c"
    table = {}
    for m in re.finditer(r'\{\s*"(\w+)",\s*(OPT_[A-Z_]+),\s*[^,]+,\s*(-?\d+),\s*(-?\d+),'
                         r'\s*(NULL|"[^"]*"|\w+)(.*?)\}', body.group(1)):
        name, typ, lo, hi, dflt, rest = m.groups()
        dflt = None if dflt == "NULL" else dflt[1:-1] if dflt.startswith('"') else BUILT
        table[name] = (typ, int(lo), int(hi), dflt, "OPT_RESTART" in rest)
    rows = [l for l in body.group(1).splitlines() if l.strip().startswith("{")]
    assert len(table) == len(rows), \
        "cannot read every row of options[] in src/config.c; update option_table() in this test"
    return table


@functools.lru_cache(maxsize=None)
def usage_line():
    r = roomd("-h")
    assert r.returncode == 0 and r.stderr == "", f"roomd -h: exit {r.returncode}, stderr {r.stderr!r}"
    m = re.fullmatch(r"usage: (roomd .*)\n", r.stdout)
    assert m, f"roomd -h printed no usage line: {r.stdout!r}"
    return m.group(1)


def usage_flags():
    """{flag: argument name or None} from the usage line."""
    flags = {}
    for group in re.findall(r"\[([^\]]+)\]", usage_line()):
        m = re.fullmatch(r"-(\w) (.+)", group)
        if m:
            flags[m.group(1)] = m.group(2)
        else:
            assert re.fullmatch(r"-\w+", group), f"odd usage group [{group}]"
            flags.update((c, None) for c in group[1:])
    return flags


def mdoc_text(s):
    """Undo the few roff escapes the pages use in values."""
    return s.replace("\\(aq", "'").replace("\\&", "").replace("\\-", "-")


def ic_names(src):
    """Words marked up with `Ic` (configuration keys) on the macro lines of a page."""
    names = set()
    for line in src.splitlines():
        if not line.startswith(".") or line.startswith('.\\"'):
            continue
        on = False
        for tok in line[1:].split():
            if tok == "Ic":
                on = True
            elif re.fullmatch(r"[A-Z][a-z][A-Za-z]?", tok):
                on = False      # another macro
            elif on and re.fullmatch(r"[a-z_][a-z0-9_]*", tok):
                names.add(tok)
    return names


def section(src, name):
    m = re.search(r"^\.Sh %s\n(.*?)(?=^\.Sh |\Z)" % re.escape(name), src, re.M | re.S)
    assert m, f"no .Sh {name} section"
    return m.group(1)


# ---- roomd.conf.5 ----

@functools.lru_cache(maxsize=None)
def conf5_entries():
    """[(key, entry source)] for every `.It Ic key` line of roomd.conf.5, in order."""
    parts = re.split(r"^\.It Ic (\w+)\b.*$", read(MAN5), flags=re.M)
    return [(parts[i], parts[i + 1].split("\n.Sh ")[0]) for i in range(1, len(parts), 2)]


def conf5_entry(key):
    entries = dict(conf5_entries())
    assert key in entries, f"roomd.conf.5 has no '.It Ic {key}' entry"
    return entries[key]


def ql_value(line):
    """The argument text of a `.Ql` line, without trailing punctuation."""
    return mdoc_text(re.sub(r"\s+[.,;:]$", "", line)).strip('"')


def conf5_default(key):
    """The default written in key's entry: a list of values (one per `.Ql` line
    after "Default:"), None for "Default: unset." or BUILT for "Default: set when
    roomd is built"."""
    body = conf5_entry(key)
    m = re.search(r"^Default:\n((?:\.Ql .+\n|and\n)+)", body, re.M)
    if m:
        return [ql_value(l[4:]) for l in m.group(1).splitlines() if l.startswith(".Ql ")]
    if re.search(r"^Default: set when roomd is built", body, re.M):
        return BUILT
    assert re.search(r"^Default: unset\.", body, re.M), (
        f"roomd.conf.5: entry {key} has none of 'Default:' followed by '.Ql VALUE' lines, "
        "'Default: unset.' or 'Default: set when roomd is built'")
    return None


def to_number(text, typ):
    """A range bound as written in the page, in the option table's unit (ms or bytes)."""
    units = {
        "OPT_INT": {"": 1},
        "OPT_DURATION": {"": 1000, "ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000},
        "OPT_SIZE": {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
                     "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
                     "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30},
    }[typ]
    m = re.fullmatch(r"(\d+)([a-z]*)", text.lower())
    assert m and m.group(2) in units, f"cannot read {text!r} as a {typ} bound"
    return int(m.group(1)) * units[m.group(2)]


def test_conf5_documents_every_key_in_order():
    documented = [k for k, _ in conf5_entries()]
    assert documented == known_keys(), (
        "man/roomd.conf.5 '.It Ic key' entries differ from roomd -T:\n"
        f"  missing from the page: {[k for k in known_keys() if k not in documented]}\n"
        f"  not known to roomd:    {[k for k in documented if k not in known_keys()]}\n"
        f"  page order: {documented}\n  roomd -T:   {known_keys()}")


def built_default(key):
    """Whether key's default depends on the build: a macro, or NULL in options[] but a value in -T."""
    dflt = option_table()[key][3]
    return dflt is BUILT or (dflt is None and f"# {key} (unset)" not in default_dump().splitlines())


def test_conf5_defaults_match_roomd(tmp_path):
    lines = []
    for key in known_keys():
        values = conf5_default(key)
        if values is None:
            assert f"# {key} (unset)" in default_dump().splitlines(), \
                f"roomd.conf.5 says {key} is unset by default, but roomd -T has a value"
        elif values is BUILT:
            assert built_default(key), \
                f"roomd.conf.5 says the default of {key} is set when roomd is built; options[] has a literal"
        else:
            assert option_table()[key][3] is not BUILT, \
                f"roomd.conf.5: the default of {key} is set at build time; say 'Default: set when roomd is built'"
            lines.extend(f"{key} {v}\n" for v in values)
    conf = tmp_path / "defaults-from-page.conf"
    conf.write_text("".join(lines))
    got = roomd_dump("-c", str(conf))
    assert got == default_dump(), "the defaults written in roomd.conf.5 differ from roomd's:\n" + \
        dump_diff(got, default_dump(), "roomd -T with the page's defaults", "roomd -T -c /dev/null")


def test_conf5_ranges_match_option_table():
    table = option_table()
    for key, body in conf5_entries():
        typ, lo, hi = table[key][:3]
        m = re.search(r"^Range:\n\.Ql (\S+)\nto\n\.Ql (\S+)", body, re.M)
        if typ not in NUMERIC_TYPES:
            assert not m, f"roomd.conf.5 gives a range for {key}, which is {typ}"
            continue
        assert m, f"roomd.conf.5: entry {key} ({typ}) has no 'Range:' / '.Ql MIN' / 'to' / '.Ql MAX'"
        got = (to_number(m.group(1), typ), to_number(m.group(2), typ))
        assert got == (lo, hi), f"roomd.conf.5 range of {key} is {got}, options[] says {(lo, hi)}"


def test_conf5_restart_marks_match_option_table():
    for key, body in conf5_entries():
        restart = "\nNeeds a restart." in body
        reload = "\nApplied on reload." in body
        assert restart != reload, \
            f"roomd.conf.5: entry {key} needs exactly one of 'Needs a restart.' / 'Applied on reload.'"
        assert restart == option_table()[key][4], \
            f"roomd.conf.5 says {key} {'needs a restart' if restart else 'is reloadable'}; options[] disagrees"


def test_conf5_route_kinds_match_code():
    m = re.search(r"route_kinds\[\]\s*=\s*\{([^}]*)\}", read(CONFIG_C))
    assert m, "cannot find route_kinds[] in src/config.c"
    kinds = re.findall(r'"(\w+)"', m.group(1))
    documented = re.findall(r"^\.It Cm (\w+)$", conf5_entry("route"), re.M)
    assert documented == kinds, f"roomd.conf.5 route kinds {documented}, route_kinds[] in config.c {kinds}"


def test_conf5_examples_parse(tmp_path):
    blocks = re.findall(r"^\.Bd -literal.*?\n(.*?)^\.Ed$", section(read(MAN5), "EXAMPLES"), re.M | re.S)
    assert blocks, "roomd.conf.5 EXAMPLES has no .Bd -literal example"
    for i, block in enumerate(blocks):
        conf = tmp_path / f"example{i}.conf"
        conf.write_text(mdoc_text(block))
        r = roomd("-t", "-c", str(conf))
        assert r.returncode == 0, f"roomd.conf.5 example {i + 1} fails roomd -t: {r.stderr}"


# ---- conf/roomd.conf ----

SETTING = re.compile(r"(#?)([a-z_][a-z0-9_]*)\s+(\S.*)")


@functools.lru_cache(maxsize=None)
def conf_settings():
    """[(key, active, comment block above its first line)] for every setting line.

    "key value" is active, "#key value" a commented-out example, "# text" prose."""
    out, block = [], []
    for line in read(CONF).splitlines():
        m = SETTING.fullmatch(line)
        if m:
            out.append((m.group(2), m.group(1) == "", "\n".join(block)))
            block = []
        elif line.startswith("#"):
            block.append(line)
        else:
            block = []
    return out


def test_conf_file_lists_every_key_in_order():
    listed = []
    for key, _, _ in conf_settings():
        if key not in listed:
            listed.append(key)
    assert listed == known_keys(), (
        "conf/roomd.conf differs from roomd -T:\n"
        f"  missing from the file: {[k for k in known_keys() if k not in listed]}\n"
        f"  not known to roomd:    {[k for k in listed if k not in known_keys()]}\n"
        f"  file order: {listed}\n  roomd -T:   {known_keys()}")


def test_conf_file_passes_roomd_t():
    r = roomd("-t", "-c", CONF)
    assert r.returncode == 0, f"roomd -t -c conf/roomd.conf: {r.stderr}"


def test_conf_file_sets_the_defaults():
    got = roomd_dump("-c", CONF)
    assert got == default_dump(), "conf/roomd.conf does not set the built-in defaults:\n" + \
        dump_diff(got, default_dump(), "roomd -T -c conf/roomd.conf", "roomd -T -c /dev/null")


def test_conf_file_examples_parse(tmp_path):
    """Each "#key value" example, uncommented alone, still gives a valid file (an
    example naming a file that does not exist here may fail for that reason only;
    one that cannot stand alone, such as api_listen without a key, must give a
    valid file uncommented with the other examples of its paragraph); keys
    without a literal default are listed only as examples."""
    examples = {k for k, active, _ in conf_settings() if not active}
    active = {k for k, a, _ in conf_settings() if a}
    for key in known_keys():
        if f"# {key} (unset)" in default_dump().splitlines() or conf5_default(key) is BUILT:
            assert key in examples and key not in active, \
                f"conf/roomd.conf: {key} is unset or set at build time, so list it only as '#{key} example'"
    lines = read(CONF).splitlines(True)
    conf = tmp_path / "one-example.conf"
    for i, line in enumerate(lines):
        m = SETTING.fullmatch(line.rstrip("\n"))
        if not m or m.group(1) != "#":
            continue
        conf.write_text("".join(lines[:i] + [line[1:]] + lines[i + 1:]))
        r = roomd("-t", "-c", str(conf))
        if r.returncode != 0 and "No such file or directory" not in r.stderr:
            lo, hi = i, i
            while lo > 0 and lines[lo - 1].strip():
                lo -= 1
            while hi + 1 < len(lines) and lines[hi + 1].strip():
                hi += 1
            para = [j for j in range(lo, hi + 1) if j != i and (m2 := SETTING.fullmatch(lines[j].rstrip("\n")))
                    and m2.group(1) == "#"]
            if para:
                conf.write_text("".join(l[1:] if j == i or j in para else l for j, l in enumerate(lines)))
                r = roomd("-t", "-c", str(conf))
        assert r.returncode == 0 or "No such file or directory" in r.stderr, \
            f"conf/roomd.conf line {i + 1} uncommented fails roomd -t: {r.stderr}"


def test_conf_file_restart_marks_match_option_table():
    seen = set()
    for key, _, block in conf_settings():
        if key in seen:
            continue
        seen.add(key)
        assert block, f"conf/roomd.conf: no '# ...' explanation above {key}"
        assert ("[restart]" in block) == option_table()[key][4], \
            f"conf/roomd.conf: '[restart]' above {key} disagrees with options[]"


# ---- roomd.8 ----

def test_roomd8_synopsis_matches_usage():
    r = subprocess.run(["mandoc", "-Tascii", "-O", "width=400", MAN8], capture_output=True, text=True)
    text = re.sub(r".\x08", "", r.stdout)
    m = re.search(r"^SYNOPSIS\n(.*?)\n(?=\S)", text, re.M | re.S)
    assert m, "no SYNOPSIS in the rendered roomd.8"
    assert " ".join(m.group(1).split()) == usage_line(), "roomd.8 SYNOPSIS differs from roomd -h"


def test_roomd8_options_match_usage():
    documented = {}
    for flag, arg in re.findall(r"^\.It Fl (\w)(?: Ar (.+))?$", section(read(MAN8), "OPTIONS"), re.M):
        assert flag not in documented, f"roomd.8 OPTIONS documents -{flag} twice"
        documented[flag] = mdoc_text(arg) or None
    assert documented == usage_flags(), (
        "roomd.8 OPTIONS ('.It Fl x Ar arg') differ from roomd -h:\n"
        f"  page:  {sorted(documented.items())}\n  usage: {sorted(usage_flags().items())}")


def test_roomd8_restart_keys_match_option_table():
    m = re.search(r"^Changes to\n(.*?)\nneed a full restart", read(MAN8), re.M | re.S)
    assert m, "roomd.8 lacks the 'Changes to .Ic KEYS need a full restart' sentence"
    named = set()
    for line in m.group(1).splitlines():
        if line.startswith(".Ic "):
            named.update(w for w in line[4:].split() if re.fullmatch(r"[a-z_][a-z0-9_]*", w))
    want = {k for k, v in option_table().items() if v[4]}
    assert named == want, (f"roomd.8 restart list vs OPT_RESTART in options[]: missing {sorted(want - named)}, "
                           f"extra {sorted(named - want)}")


# ---- every man page ----

@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_man_page_names_only_known_keys(page):
    named = ic_names(read(page))
    assert named <= set(known_keys()), \
        f"{os.path.basename(page)} marks up unknown keys with .Ic: {sorted(named - set(known_keys()))}"


@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_man_page_lint(page):
    """mandoc's lint and groff's warnings (what man(1) on most systems uses), both clean."""
    r = subprocess.run(["mandoc", "-Tlint", "-Wwarning", page], capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    r = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


# ---- README ----

def test_quick_start_works_without_sudo():
    """A fresh Debian container is often root without sudo: the quick start's
    first command must not need sudo, and install-deps.sh asks sudo itself
    only when it is not root."""
    readme = read(os.path.join(TOP, "README.md"))
    m = re.search(r"## Quick start.*?```\n(.*?)\n```", readme, re.S)
    assert m, "README has no quick-start command block"
    assert "sudo" not in m.group(1).split(), m.group(1)
    deps = read(os.path.join(TOP, "tests", "install-deps.sh"))
    assert re.search(r'if \[ "\$\(id -u\)" -ne 0 \]; then.*exec sudo', deps, re.S), \
        "install-deps.sh does not ask sudo for itself when run by another user"
    as_root = subprocess.run(["sh", "-n", os.path.join(TOP, "tests", "install-deps.sh")])
    assert as_root.returncode == 0
