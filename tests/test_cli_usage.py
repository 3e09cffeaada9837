"""Usage errors exit 2 with click's own message, whichever click typer bundles;
global flags work after the subcommand; option values are checked before work."""

from __future__ import annotations

import pytest

from robustbench_x.results import read_results


def _text(stream: str) -> str:
    """The message without typer's error panel (box characters, wrapping)."""
    return " ".join(stream.replace("│", " ").split())


@pytest.mark.parametrize(
    "args, message",
    [
        (["run"], "Missing option '--suite'"),
        (["runn", "--suite", "ood"], "No such command 'runn'"),
        (["run", "--suite", "ood", "--bogus"], "No such option: --bogus"),
        (["run", "--suite", "ood", "--workers", "abc"], "Invalid value for '--workers'"),
        (["run", "--suite", "ood", "--workers", "0"], "Invalid value for '--workers'"),
        (["run", "--suite", "ood", "--workers", "-3"], "Invalid value for '--workers'"),
        (["run", "--suite", "ood", "--job-timeout", "-5"], "must be a positive number of seconds, got -5"),
        (["run", "--suite", "ood", "--job-timeout", "0"], "must be a positive number of seconds, got 0"),
        (["run", "--suite", "ood", "--job-timeout", "nan"], "must be a positive number of seconds, got nan"),
        (["run", "--suite", "ood", "--job-timeout", "inf"], "must be a positive number of seconds, got inf"),
        (["run", "--suite", "ood", "--seeds", "0,,1"], "empty item in '0,,1'"),
        (["run", "--suite", "ood", "--seeds", "0,x"], "seeds are integers"),
        (["run", "--suite", "ood", "--seeds", "-1"], "seeds are non-negative"),
        # numpy's global seed takes 32 bits: 2**32 would silently repeat seed 0 under another name
        (["run", "--suite", "ood", "--seeds", "0,4294967296"], "seeds are below 2**32"),
        (["run", "--suite", "ood", "--seeds", "99999999999999999999"], "seeds are below 2**32"),
        (["leaderboard", "STORE", "--bootstrap", "5"], "--bootstrap must be 0 (no intervals) or between 20 and 100000, got 5"),
        (["leaderboard", "STORE", "--bootstrap", "100000000000"], "--bootstrap must be 0"),
        (["run", "--suite", "ood", "--methods", "msp,,energy"], "empty item in 'msp,,energy'"),
        (["run", "--suite", "ood", "--methods", ""], "Invalid value for '--methods': empty item"),  # not "every method"
        (["run", "--suite", "ood", "--models", "builtin-cnn,"], "Invalid value for '--models'"),
        (["run", "--suite", "ood", "--datasets", " "], "Invalid value for '--datasets'"),
        # named by the user, and not one job can run: say why instead of "0 ok, 1 skipped", exit 0
        (["run", "--suite", "ood", "--models", "builtin-cnn", "--methods", "mcm"], "every job of the models and datasets named is skipped"),
        # an executor option the chosen executor does not read would be ignored
        (["run", "--suite", "ood", "--ray-address", "10.0.0.1:6379"], "--ray-address is not read by the 'local' executor"),
        (["run", "--suite", "ood", "--ray-gpus", "1"], "fix: use --executor ray, or drop --ray-gpus"),
        (["run", "--suite", "ood", "--executor", "ray", "--job-timeout", "60"], "fix: use --executor local, or drop --job-timeout"),
        (["run", "--suite", "ood", "--executor", "ray", "--devices", "0"], "--devices is not read by the 'ray' executor"),
        (["run", "--suite", "ood", "--executor", "inline", "--workers", "2"], "--workers is not read by the 'inline' executor"),
    ],
)
def test_usage_errors_exit_2_with_clicks_message(cli, tmp_path, args, message):
    out = tmp_path / "store"
    args = [str(tmp_path) if a == "STORE" else a for a in args]
    result = cli(*args, "--out", str(out)) if args[0] in ("run", "leaderboard") and len(args) > 1 else cli(*args)
    assert result.code == 2, result
    assert message in _text(result.err), result
    assert "internal error" not in result.err and "Traceback" not in result.err
    assert not out.exists()


def test_global_flags_are_accepted_after_the_subcommand(cli):
    result = cli("list", "suites", "--quiet", "--debug", "--format", "json")
    assert result.code == 0, result
    assert '"ood"' in result.out


def test_debug_after_the_subcommand_keeps_the_exit_code_and_shows_the_traceback(cli):
    result = cli("run", "--suite", "oood", "--debug")
    assert result.code == 2, result
    assert "Traceback" in result.err and "unknown suite 'oood'" in result.err


def test_no_message_sends_the_user_to_a_flag_that_is_refused(cli):
    result = cli("run", "--suite", "ood", "--debug", "--workers", "abc")
    assert result.code == 2 and "--debug" not in result.err.replace("rbx run --help", ""), result


def test_repeated_seeds_run_once_with_a_note(cli, tmp_path):
    result = cli("run", "--suite", "ood", "--methods", "msp", "--seeds", "1,1", "--seeds", "1", "--quiet", "--out", str(tmp_path))
    assert result.code == 0, result
    assert "running seeds 1 once each" in result.err
    frame = read_results(tmp_path)
    assert set(frame["seed"]) == {1}
    assert not frame.duplicated(["model", "dataset", "subset", "method", "metric", "seed"]).any()


def test_run_with_quiet_after_the_subcommand_runs_quietly(cli, tmp_path):
    result = cli("run", "--suite", "ood", "--methods", "msp,energy", "--quiet", "--out", str(tmp_path))
    assert result.code == 0, result
    assert "ood: " in result.out and "━" not in result.err  # the summary line, no progress bar
    assert set(read_results(tmp_path)["status"]) == {"ok"}


@pytest.mark.parametrize(
    ("visible", "message"),
    [("", "--devices 0: no CUDA GPU is visible on this machine"), ("2,3", "--devices 0: not a visible GPU (visible: 2,3)")],
)
def test_devices_that_are_not_visible_gpus_stop_the_run_before_any_work(cli, tmp_path, monkeypatch, visible, message):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)  # every job would otherwise fail in its worker with CUDA's error
    out = tmp_path / "store"
    result = cli("run", "--suite", "ood", "--devices", "0", "--out", str(out))
    assert result.code == 2 and message in _text(result.err), result
    assert not out.exists()


def test_a_refusal_with_format_json_leaves_stdout_empty(cli, tmp_path):
    """What README promises machines: stdout holds JSON or nothing; the message is on stderr."""
    for args in (["--datasets", "nope"], ["--seeds", "x"]):
        result = cli("run", "--suite", "ood", *args, "--format", "json", "--out", str(tmp_path / "store"))
        assert result.code == 2 and result.out == "" and result.err.strip(), result
