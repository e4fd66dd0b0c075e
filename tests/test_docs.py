"""The docs say what the code does.

* Every ```python block of README.md and docs/*.md runs: the blocks of one
  file in order, sharing one namespace (as a reader would paste them), in an
  empty working directory, with matplotlib on Agg. A failure names the file
  and the line of the block. Excerpts and shell lines are fenced as `text`,
  `bash` or bare instead, and are not run.
* docs/walkthrough.py runs to the end.
* docs/results.md is what `python -m benchmarks.report` makes of its inputs.
* No page speaks of how it was written: no commit hashes, sessions, run
  numbers or clock times.
"""
from __future__ import annotations

import configparser
import json
import re
import runpy
import traceback
from pathlib import Path

import pytest

from benchmarks import machine, report

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")


def python_blocks(text):
    """[(line, code)] of every fenced block whose info string is `python`; line is the
    1-based line of the block's first line of code."""
    blocks, fence, lang, start, lines = [], None, None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            m = FENCE.match(line)
            if m:
                fence, lang, start, lines = m.group(1), m.group(2).lower(), number + 1, []
        elif line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            if lang == "python":
                blocks.append((start, "\n".join(lines) + "\n"))
            fence = None
        else:
            lines.append(line)
    if fence is not None:
        raise ValueError(f"a code fence opened at line {start - 1} is never closed")
    return blocks


def rel(path):
    return path.relative_to(ROOT).as_posix()


def test_python_blocks_are_found_and_other_fences_are_not():
    text = ("intro\n```python\nx = 1\n```\n```text\nnot run\n```\n```\nbare\n```\n"
            "````python\n```\ninner\n```\n````\n")
    assert python_blocks(text) == [(3, "x = 1\n"), (12, "```\ninner\n```\n")]
    with pytest.raises(ValueError, match="line 1"):
        python_blocks("```python\nx = 1\n")
    assert python_blocks((ROOT / "README.md").read_text()), "README.md should show runnable code"


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p.read_text())], ids=rel)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib
    matplotlib.use("Agg")
    namespace = {"__name__": "__main__"}
    for line, code in python_blocks(path.read_text()):
        # blank lines in front make tracebacks give the line numbers of the Markdown file
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        try:
            exec(compiled, namespace)
        except Exception as e:
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))
            pytest.fail(f"{rel(path)}:{line}: the python block starting here fails "
                        f"({type(e).__name__}: {e}). Fix the block, or fence it as ```text "
                        f"if it is an excerpt that cannot run.\n{tb}", pytrace=False)


def test_walkthrough_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = runpy.run_path(str(ROOT / "docs" / "walkthrough.py"), run_name="__main__")
    pngs = sorted(p.name for p in (tmp_path / "runs" / "walkthrough").glob("*.png"))
    stages = namespace["stages"]
    assert len(pngs) == len(stages) + 1          # one plot per stage, and the input image
    assert [s.devices for s in stages if s.name == "conv1"] == [["cpu:0", "cpu:1"]]
    crossings = [s.name for s in stages if s.name.startswith("copy")]
    assert crossings == ["copy before conv3", "copy before fc6", "copy before fc7", "copy before fc8"]
    assert stages[-1].name == "softmax" and stages[-1].outputs[0].shape == (1, 1000)
    assert namespace["gradcheck_ok"] is True


# --- the results page ------------------------------------------------------------

def test_results_page_is_generated_from_its_inputs():
    assert report.PAGE.read_text() == report.render(report.load()), (
        "docs/results.md is out of date: run `python -m benchmarks.report` and commit it")


def test_results_page_shows_each_measurements_command_and_machine(tmp_path):
    bench = {"benchmark": "bench_x", "notes": {"threads": 2},
             "machine": machine.machine(["benchmarks/bench_cifar.py", "--steps", "3"]),
             "rows": [{"impl": "minidl", "ms_per_step": 80.64, "images_per_s": 1587.1},
                      {"impl": "torch", "ms_per_step": 58.1}],
             "checks": [{"max|a-b|": 0.5, "ok": True, "never": None}]}
    fig1 = {"config": {"target": 0.25, "train_images": 50000}, "ratio": 7.09,
            "machine": {"command": "alexnet figure1", "cpu": "Some CPU", "cores": 2},
            "runs": {"relu": {"lr": 0.004, "epochs_to_target": 7.14},
                     "tanh": {"lr": 0.016, "epochs_to_target": 50.62}}}
    (tmp_path / "bench_x.json").write_text(json.dumps(bench))
    (tmp_path / "figure1.json").write_text(json.dumps(fig1))
    page = report.render(report.load(tmp_path))
    assert page.index("## Figure 1") < page.index("## bench_x\n")
    assert "[`results/bench_x.json`](results/bench_x.json)" in page
    assert "Command: `python -m benchmarks.bench_cifar --steps 3`" in page
    assert "Command: `alexnet figure1`" in page and "CPU Some CPU, cores 2" in page
    assert f"NumPy {machine.version('numpy')}" in page
    assert "| minidl | 80.6 | 1,587 |" in page and "| torch | 58.1 |  |" in page
    assert "7.1x" in page and "threads = 2" in page
    assert "**checks**\n\n| max\\|a-b\\| | ok |\n|---|---|\n| 0.5 | yes |" in page
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SystemExit, match="broken.json"):
        report.load(tmp_path)


def test_figure1_images_per_second_are_the_totals_not_a_mean_of_epoch_rates():
    run = {"config": {"train_images": 50000},
           "runs": {"tanh": {"epochs_run": 52, "seconds": 1998.81, "images_per_s": 1465.6}}}
    page = report.figure1_section("figure1", run)
    assert "| 1,301 |" in page and "1,466" not in page          # 52 x 50,000 / 1998.81 s


def test_adding_a_figure1_run_records_this_machine(tmp_path):
    run = tmp_path / "run" / "figure1.json"
    run.parent.mkdir()
    run.write_text(json.dumps({"config": {}, "runs": {}, "ratio": None}))
    report.add([run], tmp_path / "snapshots")
    kept = json.loads((tmp_path / "snapshots" / "figure1.json").read_text())
    assert kept["machine"]["command"] == "alexnet figure1" and kept["machine"]["numpy"]
    with pytest.raises(SystemExit, match="does not exist"):
        report.add([tmp_path / "missing.json"], tmp_path / "snapshots")


@pytest.mark.parametrize("ratio, says", [
    ({"tanh_over_relu": 7.2279}, "tanh needed 7.2x"),          # as alexnet figure1 writes it
    (6.6, "tanh needed 6.6x"),
    ({"tanh_over_relu": None, "at_least": 5.4,
      "at_tanh_best": {"error": 0.27, "tanh_over_relu": 4.9}}, "at least 5.4x"),
])
def test_the_figure1_ratio_reads_as_a_run_writes_it(ratio, says):
    run = {"config": {}, "runs": {}, "ratio": ratio}
    assert says in report.figure1_section("figure1", run)


def test_machine_names_the_command_as_typed():
    assert machine.command([str(ROOT / "benchmarks" / "bench_data.py"), "--images", "8"]) == \
        "python -m benchmarks.bench_data --images 8"
    assert machine.command(["/usr/bin/alexnet", "figure1", "--quick"]) == "/usr/bin/alexnet figure1 --quick"
    info = machine.machine([])
    assert info["cores"] >= info["usable_cores"] >= 1 and info["numpy"] and info["cpu"]


# --- no diary in the docs ------------------------------------------------------------

DIARY = {
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])([0-9a-f]{7,12}|[0-9a-f]{40})\b"),
    "a session": re.compile(r"\bsessions?\b", re.I),
    "a clock time": re.compile(r"\b([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?\b"),
    "a run number": re.compile(r"\brun \d+\b|\bruns \d+-\d+\b", re.I),
    "the issue tracker": re.compile(r"\bthe issue\b|\bissue #?\d+", re.I),
}
PAGES = DOCS + [ROOT / "docs" / "walkthrough.py"] + sorted(
    p for package in ("minidl", "alexnet", "benchmarks") for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", PAGES, ids=rel)
def test_no_diary_words(path):
    found = [f"{rel(path)}:{number}: {what} ({m.group(0)!r}): {line.strip()}"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             for what, pattern in DIARY.items() for m in [pattern.search(line)] if m]
    assert not found, ("the docs describe the code as it is: measurements go to docs/results.md "
                       "(python -m benchmarks.report), history to git:\n" + "\n".join(found))


def test_readme_names_every_dependency():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    names = [re.split(r"[<>=!~;\[ ]", line.strip())[0]
             for line in cfg["options"]["install_requires"].splitlines() if line.strip()]
    readme = (ROOT / "README.md").read_text()
    count = re.search(r"\b(\w+) dependencies\b", readme)
    numbers = "zero one two three four five six seven eight nine ten eleven twelve".split()
    assert count and count.group(1).lower() in numbers, "README.md should say how many dependencies"
    assert numbers.index(count.group(1).lower()) == len(names), (
        f"README.md says {count.group(1)} dependencies; setup.cfg has {len(names)}: {names}")
    missing = [n for n in names if n.lower() not in readme.lower()]
    assert not missing, f"README.md does not name these dependencies of setup.cfg: {missing}"


LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")


def anchors(markdown):
    """The #anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to -."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_relative_links_point_at_what_exists(path):
    broken = []
    for target, anchor in LINK.findall(path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        file = path.parent / target
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor[1:] not in anchors(file.read_text()):
            broken.append(f"{target}{anchor} (no such heading)")
    assert not broken, f"{rel(path)} links to what does not exist: {broken}"
