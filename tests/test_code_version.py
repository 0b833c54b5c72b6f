"""A run's code version covers exactly the source its protocol can reach (its import closure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from verify import runner


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "implementations"
    files = {
        "__init__.py": "",
        "common/__init__.py": "",
        "common/loop.py": "STEP = 1\n",
        "common/unused.py": "X = 1\n",
        "alpha/__init__.py": "",
        "alpha/model.py": "from ..common import loop\n",
        "alpha/protocols.py": "from implementations.alpha.model import *\n\ndef run(seed, device):\n"
                              "    from .extra import helper  # a lazy import counts too\n    return {}\n",
        "alpha/extra.py": "def helper():\n    return 1\n",
        "alpha/seed_batched.py": "from implementations.alpha import protocols\n\nFORMS = {}\n",
        "beta/__init__.py": "",
        "beta/protocols.py": "from implementations.common import unused\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setattr(runner, "IMPLEMENTATIONS_DIR", root)
    runner.code_version.cache_clear()
    yield root
    runner.code_version.cache_clear()


def version(root: Path, edit: str | None = None) -> str:
    if edit is not None:
        path = root / edit
        path.write_text(path.read_text() + "# edited\n")
    runner.code_version.cache_clear()
    return runner.code_version("implementations.alpha.protocols:run")


@pytest.mark.parametrize("edit", ["alpha/protocols.py", "alpha/model.py", "alpha/extra.py", "common/loop.py",
                                  "common/__init__.py", "alpha/__init__.py"])
def test_an_edit_the_protocol_can_reach_changes_its_version(tree: Path, edit: str) -> None:
    before = version(tree)
    assert version(tree, edit) != before


@pytest.mark.parametrize("edit", ["beta/protocols.py", "common/unused.py"])
def test_an_edit_elsewhere_leaves_its_version(tree: Path, edit: str) -> None:
    before = version(tree)
    assert version(tree, edit) == before


def test_a_batched_form_changes_only_the_batched_version(tree: Path) -> None:
    protocol = "implementations.alpha.protocols:run"
    sequential, batched = runner.code_version(protocol), runner.code_version(protocol, seed_batched=True)
    assert sequential != batched
    path = tree / "alpha/seed_batched.py"
    path.write_text(path.read_text() + "# edited\n")
    runner.code_version.cache_clear()
    assert runner.code_version(protocol) == sequential
    assert runner.code_version(protocol, seed_batched=True) != batched
    assert version(tree, "alpha/model.py") != sequential  # the protocol's own closure: both move
    assert runner.code_version(protocol, seed_batched=True) != batched


def test_a_protocol_without_a_companion_has_no_batched_version(tree: Path) -> None:
    with pytest.raises(LookupError):
        runner.code_version("implementations.beta.protocols:run", seed_batched=True)
