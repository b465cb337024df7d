"""Usage errors, environment faults and bad values through the installed `fairtrial`, as a user
meets them (issue 15, items 2, 4, 5, 6, 7): every usage error exits 2 with one line and no
traceback; environment faults exit 74 (or 2 for bad input) with one line; exit 70 only for a bug,
which a test hook raises on purpose."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import study_text


def one_line_error(p: subprocess.CompletedProcess, rc: int = 2) -> str:
    """The process exited `rc` and said exactly one `error:` line on stderr, no traceback."""
    out = p.stdout + p.stderr
    assert p.returncode == rc, f"exit {p.returncode}\n{out}"
    assert "Traceback" not in out and "internal error" not in out, out
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: "), p.stderr
    return lines[0]


# ---------------------------------------------------------------- item 2: usage errors
USAGE = {
    "no command": [],
    "a group without its command": ["data"],
    "run without a file": ["run"],
    "an unknown option": ["run", "--bogus", "study.toml"],
    "an unknown command": ["runn", "study.toml"],
    "--cpus abc": ["run", "study.toml", "--cpus", "abc"],
    "two files where one is expected": ["check", "study.toml", "other.toml"],
    "-w without its value": ["-w"],
    "logs --tail abc": ["logs", "abcdef", "--tail", "abc"],
}


@pytest.mark.parametrize("args", USAGE.values(), ids=USAGE.keys())
def test_usage_errors_exit_2_with_one_line(cli, make_study, args):
    make_study()
    p = cli(*args, timeout=60)
    one_line_error(p)


def _vendored(name: str, module: str) -> type:
    """A click exception class as a vendored copy of click would define it."""
    return type(name, (Exception,), {"__module__": module, "exit_code": 2,
                                     "format_message": lambda self: str(self.args[0])})


@pytest.mark.parametrize("make", [
    lambda: __import__("click").UsageError("bad use"),
    lambda: __import__("click").BadParameter("bad use"),
    lambda: __import__("typer._click.exceptions", fromlist=["x"]).NoSuchOption("bad use"),
    lambda: __import__("typer._click.exceptions", fromlist=["x"]).BadArgumentUsage("bad use"),
    lambda: _vendored("UsageError", "othertool._vendor.click.exceptions")("bad use"),
    lambda: type("MissingParameter", (_vendored("UsageError", "typer._click.exceptions"),), {})("bad use"),
], ids=["click", "click BadParameter", "typer._click", "typer._click BadArgumentUsage",
        "another vendored click", "a subclass"])
def test_every_click_variant_is_a_usage_error(monkeypatch, capsys, make):
    from fairtrial import cli as cli_mod

    def raising(*a, **kw):
        raise make()

    monkeypatch.setattr(cli_mod, "app", raising)
    assert cli_mod.main(["whatever"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad use" in err and len(err.strip().splitlines()) == 1, err


def test_no_command_prints_the_help_and_exits_2(cli):
    p = cli()
    assert "Commands" in p.stdout and "check" in p.stdout
    assert "give a command" in one_line_error(p)


def test_global_workspace_option_before_the_command(cli, make_study):
    study = make_study()
    p = cli("-w", "global ws", "check", study, check=0)
    assert "valid" in p.stdout
    assert (cli.tmp / "global ws" / "fairtrial.db").exists()
    assert not (cli.tmp / "ws").exists()  # not the fixture's $FAIRTRIAL_WORKSPACE
    p = cli("-w", "global ws", "status", "--json", check=0)
    assert json.loads(p.stdout) == {"studies": []}
    # the command's own -w still wins over the global one
    cli("-w", "global ws", "check", study, "-w", "own ws", check=0)
    assert (cli.tmp / "own ws" / "fairtrial.db").exists()


def test_exit_70_only_for_a_deliberate_bug_and_crash_logs_never_collide(cli, make_study):
    cli.env["FAIRTRIAL_TEST_RAISE"] = "1"
    logs = []
    for _ in range(3):
        p = cli("version", timeout=60)
        assert p.returncode == 70, p.stderr
        assert "internal error" in p.stderr and "deliberate internal error" in p.stderr
        logs.append(re.search(r"are in (\S+fairtrial-crash-\S+\.log)", p.stderr).group(1))
    assert len(set(logs)) == 3  # named by pid and nanoseconds, not by the second
    for log in logs:
        text = Path(log).read_text()
        assert "Traceback" in text and "RuntimeError: deliberate internal error" in text


def test_crash_handler_falls_back_to_stderr_when_no_folder_takes_the_log(monkeypatch, capsys, tmp_path):
    import tempfile

    from fairtrial import cli as cli_mod

    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("FAIRTRIAL_TEST_RAISE", "1")
    monkeypatch.setenv("FAIRTRIAL_CRASH_DIR", str(blocker / "crashes"))  # not a folder
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(blocker / "tmp"))
    assert cli_mod.main(["version"]) == 70
    err = capsys.readouterr().err
    assert "RuntimeError: deliberate internal error" in err  # the traceback, on stderr
    assert "no folder could take a crash log" in err
    assert "During handling of the above exception" not in err


# ---------------------------------------------------------------- item 4: markup
def test_brackets_in_names_questions_and_errors_are_printed_as_they_are(cli, make_study):
    text = study_text(better='fail = true\nfail_message = "stopped at [/INST] and [bold]"')
    text = text.replace('name = "base"', 'name = "[bold]base"').replace(
        'control = "base"', 'control = "[bold]base"').replace(
        "Does the effect help?", "Does [/INST] help?")
    study = make_study(text)
    p = cli("check", study, check=0)
    assert "[bold]base" in p.stdout and "Does [/INST] help?" in p.stdout
    p = cli("run", study, timeout=180)
    assert p.returncode == 1, p.stdout + p.stderr  # a stage failed, as asked; no crash
    assert "Traceback" not in p.stdout + p.stderr
    assert "stopped at [/INST] and [bold]" in p.stdout
    st = json.loads(cli("status", "--json", check=0).stdout)["studies"][0]
    states = {r["state"] for r in st["runs"].values()}
    assert "lost" not in states and "running" not in states
    p = cli("status", check=0)
    assert "stopped at [/INST] and [bold]" in p.stdout and "[bold]base" in p.stdout


def test_toml_brackets_in_a_spec_error_are_printed(cli, make_study):
    study = make_study('question = "q"\nrecipe = "_test"\nreplicates = [0]\n'
                       '[endpoint]\nmetric = "score"\n')
    assert "[[arms]]" in one_line_error(cli("check", study))


# ---------------------------------------------------------------- item 5: environment faults
def test_a_folder_as_the_study_file_and_a_file_as_the_workspace(cli, make_study):
    study = make_study()
    (cli.tmp / "folder.toml").mkdir()
    assert "is a folder" in one_line_error(cli("check", cli.tmp / "folder.toml"))
    assert "is a folder" in one_line_error(cli("run", cli.tmp / "folder.toml"))
    (cli.tmp / "wsfile").write_text("")
    assert "is a file" in one_line_error(cli("check", study, "-w", cli.tmp / "wsfile"))
    assert "is a file" in one_line_error(cli("status", "-w", cli.tmp / "wsfile"))
    assert "is a file" in one_line_error(cli("check", study, "-w", cli.tmp / "wsfile" / "sub"))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_record_store_is_an_environment_fault(cli, make_study, damage):
    study = make_study(params="n_items = 5")
    cli("run", study, "--json", check=0, timeout=180)
    db = cli.tmp / "ws" / "fairtrial.db"
    data = db.read_bytes()
    for side in ("-wal", "-shm"):
        Path(str(db) + side).unlink(missing_ok=True)
    db.write_bytes(data[:3000] if damage == "truncated" else b"not a database " * 400)
    for args in (["status"], ["status", "--json"], ["run", study], ["check", study],
                 ["report", study]):
        line = one_line_error(cli(*args), rc=74)
        assert "record store" in line and "fairtrial.db" in line, line
    # the advice works: moved aside, a new store finds the verified artifacts
    db.rename(db.with_suffix(".bad"))
    out = json.loads(cli("run", study, "--json", check=0, timeout=180).stdout)
    assert out["run"] == 0 and out["cached"] == out["stage_runs"]


def _readonly(path: Path):
    """Make `path` read-only for this process: a read-only tmpfs remount as root, chmod otherwise."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        for d in path.rglob("*"):
            if d.is_dir():
                os.chmod(d, 0o555)
        return lambda: None
    r = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
    return lambda: subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_mount(tmp_path):
    """A folder that can be made read-only (a tmpfs when root)."""
    d = tmp_path / "mnt"
    d.mkdir()
    if os.geteuid() == 0:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield d
    if os.geteuid() == 0:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
    else:
        for p in [d, *d.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)


def test_a_read_only_workspace_is_one_line(cli, make_study, small_mount):
    study = make_study(params="n_items = 5")
    ws = small_mount / "ws"
    cli("run", study, "-w", ws, "--json", check=0, timeout=180)
    _readonly(small_mount)
    for args in (["status", "--json"], ["status"]):  # status only reads: it works
        p = cli(*args, "-w", ws)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "done 7" in p.stdout or '"done":7' in p.stdout
    for args in (["run", study],):
        p = cli(*args, "-w", ws)
        assert p.returncode in (0, 74), p.stdout + p.stderr
        assert "Traceback" not in p.stdout + p.stderr
        if p.returncode:
            one_line_error(p, rc=74)
    line = one_line_error(cli("check", study, "-w", small_mount / "new ws"), rc=74)
    assert "cannot be created or written" in line


# ---------------------------------------------------------------- item 6: run --detach
def test_detach_on_a_finished_study_succeeds_every_time(cli, make_study):
    study = make_study(params="n_items = 5")
    cli("run", study, "--json", check=0, timeout=180)
    # (and report options that cannot work are usage errors, before any analysis)
    one_line_error(cli("report", study, "--resamples", "0"))
    one_line_error(cli("report", study, "--seed", "-1"))
    for _ in range(5):  # the supervisor ends at once; the parent may miss its pid file
        p = cli("run", study, "--detach", timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
    p = cli("run", study, "--detach", "--json", check=0, timeout=60)
    assert json.loads(p.stdout)["detached"] is True


def test_detach_on_a_running_study_is_refused_with_3(cli, make_study):
    study = make_study(params="sleep = 30\nsteps = 30\nn_items = 5")
    cli("run", study, "--detach", check=0, timeout=60)
    try:
        p = cli("run", study, "--detach", timeout=60)
        assert "already running" in one_line_error(p, rc=3)
        assert "already running" in one_line_error(cli("run", study, timeout=60), rc=3)
    finally:
        cli("stop", "study", timeout=120)


# ---------------------------------------------------------------- item 7: values refused at check
BIG = "b" * 5000
BAD_VALUES = {
    "negative seed": (("replicates = [0, 1]", "replicates = [-1, 1]"), "replicates"),
    "seed of 2**64": (("replicates = [0, 1]", "replicates = [0, 18446744073709551616]"), "replicates"),
    "300-character name": (("question =", 'name = "' + "n" * 300 + '"\nquestion ='), "name"),
    "min_effect 1e400": (("min_effect = 0.1", "min_effect = 1e400"), "min_effect"),
    "cpus inf": (("[params]", "[resources.work]\ncpus = inf\n\n[params]"), "cpus"),
    "memory_gb 1e12": (("[params]", "[resources.work]\nmemory_gb = 1e12\n\n[params]"), "memory_gb"),
    "arm name with /": (('name = "better"', 'name = "a/b"'), "arms[1].name"),
    "arm name ..": (('name = "better"', 'name = ".."'), "arms[1].name"),
    "arm name with a newline": (('name = "better"', 'name = "a\\nb"'), "arms[1].name"),
    "arm name with a bell": (('name = "better"', 'name = "a\\u0007b"'), "arms[1].name"),
    "5,000-character arm name": (('name = "better"', f'name = "{BIG}"'), "arms[1].name"),
    "external arm with /": (("question =", 'external_arms = ["api/model"]\nquestion ='), "external_arms"),
    "question with a newline": (('question = "Does the effect help?"', 'question = "two\\nlines"'),
                                "question"),
}


@pytest.mark.parametrize("change,key", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_values_that_failed_later_are_refused_at_check(cli, make_study, change, key):
    old, new = change
    text = study_text()
    assert old in text
    study = make_study(text.replace(old, new, 1))
    line = one_line_error(cli("check", study))
    assert f": {key}" in line or f".{key}" in line, line


def test_a_long_file_name_cannot_name_a_study(cli, make_study):
    study = make_study(name="s" * 150 + ".toml")
    assert "set name =" in one_line_error(cli("check", study))


def test_seeds_are_below_2_to_the_63(cli, make_study):
    text = study_text()
    cli("check", make_study(text.replace("replicates = [0, 1]", "replicates = [0, 9223372036854775807]")),
        check=0)
    line = one_line_error(cli("check", make_study(text.replace(
        "replicates = [0, 1]", "replicates = [0, 9223372036854775808]"))))
    assert "2**63" in line


@pytest.mark.parametrize("opt,value", [("--cpus", "nan"), ("--cpus", "inf"), ("--cpus", "0"),
                                       ("--memory-gb", "nan"), ("--memory-gb", "-1")])
def test_run_refuses_budgets_that_are_not_finite_and_positive(cli, make_study, opt, value):
    study = make_study()
    assert opt in one_line_error(cli("run", study, opt, value, timeout=30))


def test_an_error_shared_by_every_arm_is_said_once(cli, make_study):
    study = make_study(params='level = "D1"')
    p = cli("check", study)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if "unknown level" in ln]
    assert len(lines) == 1, p.stderr


def test_hint_commands_quote_names(cli, make_study):
    study = make_study(name="my study.toml", params="sleep = 30\nsteps = 30\nn_items = 5")
    p = cli("run", study, "--detach", check=0, timeout=60)
    try:
        assert "fairtrial status 'my study' --watch" in p.stdout, p.stdout
        assert "fairtrial stop 'my study'" in p.stdout
    finally:
        cli("stop", "my study", timeout=120)
