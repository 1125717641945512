"""The README's walk-through runs as written, in a directory that stands for the repository root."""

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.DOTALL)


def _run_shell_line(line: str, viscy, monkeypatch) -> None:
    """Run one line of a shell block: `uv run viscy` in this process, `uv run python -c` with exec."""
    words = shlex.split(line, comments=True)
    if not words or words[0] == "pip":
        return
    if words[:2] == ["mkdir", "-p"]:
        Path(words[2]).mkdir(parents=True, exist_ok=True)
    elif words[0] == "export" and words[1].startswith("PYTHONPATH="):
        monkeypatch.syspath_prepend(str(Path(words[1].partition("=")[2]).resolve()))
    elif words[:3] == ["uv", "run", "viscy"]:
        if words[3] == "export":  # "after filling in the checkpoint path"
            (checkpoint,) = Path("demo/logs").glob("lightning_logs/*/checkpoints/*.ckpt")
            config = Path(words[-1])
            config.write_text(re.sub(r"ckpt_path: .*", f"ckpt_path: {checkpoint}", config.read_text()))
        viscy(*words[3:])
    elif words[:4] == ["uv", "run", "python", "-c"]:
        exec(compile(words[4], str(README), "exec"), {})
    else:
        raise AssertionError(f"the test does not know how to run this README line: {line}")


@pytest.mark.slow
def test_readme_walkthrough_runs(tmp_path, monkeypatch, viscy):
    monkeypatch.chdir(tmp_path)
    for language, block in BLOCKS:
        first_line = block.partition("\n")[0]
        if first_line.startswith("# demo/"):  # a file the reader saves
            Path(first_line[2:]).write_text(block)
        elif language == "sh":
            for line in block.splitlines():
                _run_shell_line(line, viscy, monkeypatch)
        elif language == "python":
            exec(compile(block, str(README), "exec"), {})
    assert Path("demo/tiny.onnx").is_file()
    assert Path("demo/classifiers").is_dir()
