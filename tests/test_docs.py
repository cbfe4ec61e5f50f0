"""The README and docs/ pages stay true to the code: every launcher command they show loads its
config through the real loader, every file they name exists, every link between pages resolves,
and no page carries a lab notebook's traces (issue numbers, commit hashes, run folders, session
words) that a reader cannot follow."""

from __future__ import annotations

import glob
import os
import re
import shlex

import pytest

from system.config.checks import validate
from system.config.grpo import Config, ConfigError, load_config
from system.config.recipe import (DistillConfig, PipelineConfig, SFTConfig, validate_distill,
                                  validate_pipeline, validate_sft)
from tests.conftest import ROOT

PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
SCHEMAS = {"grpo": (Config, validate), "evaluate": (Config, validate), "sft": (SFTConfig, validate_sft),
           "distill": (DistillConfig, validate_distill), "pipeline": (PipelineConfig, validate_pipeline)}
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"launcher/(\w+)\.py\s+--config\s+(.*)")
MAKE_DEMO = re.compile(r"make demo ARGS=(\"[^\"]*\"|'[^']*')")
NAMED_PATH = re.compile(r"(?<![\w/.$~-])"
                        r"((?:configs|bench|scripts|system|actors|launcher|tests|docs)/[\w./*-]*\w)")
MADE_BY_A_COMMAND = {"bench/.venv-trl"}  # paths that a command on the pages creates
LINK = re.compile(r"\]\(([^)\s]+)\)")
SESSION_WORDS = re.compile(r"\b(this session|this issue|this morning|this afternoon|this hour|today|now)\b",
                           re.I)
ISSUE_NUMBER = re.compile(r"(?<![\w&/])#\d+\b")
COMMIT_HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
RUN_FOLDER = re.compile(r"\b\w+_s\d+\b|\d{8}-\d{6}")


def read(page: str) -> str:
    with open(os.path.join(ROOT, page)) as f:
        return f.read()


def code_texts(text: str) -> list[tuple[str, str]]:
    """(code, the line after it) for each fenced line (backslash continuations joined) and each
    inline code span (with no line after it)."""
    fenced = [block.replace("\\\n", " ").splitlines() + [""] for block in FENCE.findall(text)]
    lines = [(block[i], block[i + 1]) for block in fenced for i in range(len(block) - 1)]
    return lines + [(span, "") for span in INLINE.findall(FENCE.sub("", text))]


def prose(text: str) -> str:
    """The page without code: fenced blocks, inline spans and link targets."""
    return LINK.sub("]", INLINE.sub("", FENCE.sub("", text)))


def launcher_commands() -> list[tuple[str, str, str, list[str], str]]:
    """(page, launcher, config path, overrides, the error the page shows after it or "") of every
    `launcher/x.py --config FILE k=v ...` and `make demo ARGS="..."` shown."""
    found = []
    for page in PAGES:
        for code, after in code_texts(read(page)):
            error = after.partition("config error: ")[2]
            if match := COMMAND.search(code):
                words = shlex.split(match.group(2).split(" #")[0].split(" |")[0], comments=True)
                overrides = [w for w in words[1:] if "=" in w and not w.startswith("-")]
                found.append((page, match.group(1), words[0], overrides, error))
            if match := MAKE_DEMO.search(code):
                args = shlex.split(match.group(1))[0].split()
                found.append((page, "grpo", "configs/grpo_countdown_cpu.yaml", args, error))
    return found


COMMANDS = launcher_commands()


def test_the_pages_show_launcher_commands():
    assert len(COMMANDS) >= 10, COMMANDS


@pytest.mark.parametrize("page,launcher,config,overrides,error", COMMANDS,
                         ids=[f"{c[0]}:{c[1]}:{os.path.basename(c[2])}" for c in COMMANDS])
def test_a_shown_command_loads_its_config(page, launcher, config, overrides, error):
    """The config loads with the command's overrides, or fails with the error the page shows."""
    script = os.path.join(ROOT, "launcher", launcher + ".py")
    assert os.path.exists(script), f"{page}: no launcher/{launcher}.py"
    assert launcher in SCHEMAS, f"{page}: no schema known for launcher/{launcher}.py"
    assert os.path.exists(os.path.join(ROOT, config)), f"{page}: no config {config}"
    schema, check = SCHEMAS[launcher]
    if error:
        with pytest.raises(ConfigError) as shown:
            load_config(os.path.join(ROOT, config), overrides, schema=schema, check=check)
        assert str(shown.value) == error, f"{page} shows another error than the loader gives"
    else:
        load_config(os.path.join(ROOT, config), overrides, schema=schema, check=check)


@pytest.mark.parametrize("page", PAGES)
def test_every_named_file_exists(page):
    named = set(NAMED_PATH.findall(read(page)))
    missing = sorted(p for p in named - MADE_BY_A_COMMAND
                     if "*" not in p and not os.path.exists(os.path.join(ROOT, p)))
    assert not missing, f"{page} names files that do not exist: {missing}"


def anchors(page: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as '-'."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+\s+(.*)$", FENCE.sub("", read(page)), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


@pytest.mark.parametrize("page", PAGES)
def test_links_between_pages_resolve(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", read(page))):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(os.path.join(ROOT, linked)):
            broken.append(target)
        elif anchor and linked.endswith(".md") and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{page} has broken links: {broken}"


@pytest.mark.parametrize("page", PAGES)
def test_no_lab_notebook_traces(page):
    text = read(page)
    words = sorted({m.group(0) for m in SESSION_WORDS.finditer(prose(text))})
    issues = sorted(set(ISSUE_NUMBER.findall(prose(text))))
    hashes = sorted(set(COMMIT_HASH.findall(text)))
    runs = sorted(set(RUN_FOLDER.findall(text)))
    assert not (words or issues or hashes or runs), (
        f"{page}: session words {words}, issue numbers {issues}, commit hashes {hashes}, run folders {runs}")


def test_the_index_lists_every_page():
    index = read("docs/README.md")
    unlisted = [page for page in PAGES if page.startswith("docs/") and page != "docs/README.md"
                and f"]({os.path.basename(page)})" not in index]
    assert not unlisted, f"docs/README.md does not list {unlisted}"
