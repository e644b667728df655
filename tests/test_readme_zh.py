"""README.zh-CN.md stays true: every `foldertune` sub-command and flag its code blocks show exists (checked against
the real `--help` of each sub-command), its `make` targets exist, and its Python examples name real API functions."""

from __future__ import annotations

import ast
import re
import shlex
from functools import cache
from pathlib import Path

from helpers import run_cli

import foldertune as ft
from foldertune.reporting.notebook_views import RunPath

ROOT = Path(__file__).parent.parent
GUIDE = ROOT / "README.zh-CN.md"


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)


def shell_commands() -> list[list[str]]:
    """Each command line of the bash blocks, as words, without its trailing comment."""
    commands = []
    for block in code_blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


@cache
def top_help() -> str:
    """`foldertune --help`: the list of sub-commands."""
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


@cache
def help_text(command: str) -> str:
    done = run_cli(command, "--help")
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


def test_the_readme_links_the_chinese_guide_at_the_top():
    top = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:5]
    assert any("(README.zh-CN.md)" in line for line in top)
    assert "(README.md)" in GUIDE.read_text(encoding="utf-8").splitlines()[2]


def test_every_command_and_flag_the_guide_shows_exists():
    commands = shell_commands()
    foldertune = [words[1:] for words in commands if words[0] == "foldertune"]
    assert len(foldertune) >= 25, "the guide's code blocks were not found"
    checked = set()
    for words in foldertune:
        command = words[0]
        assert re.search(rf"^\s+{command}\s", top_help(), flags=re.M), f"foldertune {command}"
        for flag in (word.split("=")[0] for word in words[1:] if word.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text(command)), (
                f"foldertune {command} {flag}"
            )
            checked.add((command, flag))
    assert len(checked) >= 15
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for words in commands:
        if words[0] == "make":
            assert re.search(rf"^{words[1]}:", makefile, flags=re.M), words


def test_the_python_examples_parse_and_name_real_functions():
    blocks = code_blocks("python")
    assert len(blocks) >= 3
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "ft":
                    assert callable(getattr(ft, node.attr, None)), f"ft.{node.attr}"
                elif node.value.id == "run":
                    assert callable(getattr(RunPath, node.attr, None)), f"run.{node.attr}"
