"""The examples in the README run, and print what the README shows."""

import re
import shlex
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


@pytest.mark.parametrize("code", blocks("python"))
def test_python_examples_run(code):
    exec(compile(code, "README.md", "exec"), {})


def console_examples():
    """(command, expected output lines) pairs from the console blocks."""
    out = []
    for block in blocks("console"):
        cmd = None
        for line in block.splitlines():
            if line.startswith("$ "):
                cmd = line[2:]
                out.append((cmd, []))
            elif cmd is not None:
                out[-1][1].append(line)
    return out


@pytest.mark.parametrize("cmd, expected", console_examples())
def test_console_examples(cmd, expected, capsys, tmp_path):
    from rfmap.cli import main
    from rfmap.frontends import zoo

    argv = [arg.replace("/tmp/", f"{tmp_path}/") for arg in shlex.split(cmd)]  # outputs go to tmp_path
    assert argv[0] == "rfmap"
    if len(argv) > 2 and not zoo.has(argv[2]):
        pytest.skip(f"illustration with a user's file: {argv[2]}")
    assert main(argv[1:]) == 0
    printed = capsys.readouterr().out.splitlines()
    if expected:
        assert printed == expected


def test_spec_example(tmp_path):
    import rfmap

    (spec,) = blocks("yaml")
    path = tmp_path / "net.yaml"
    path.write_text(spec)
    a = rfmap.analyze(str(path))
    assert a.output.name == "sum" and a.input_size == (224, 224)
