"""The `vitrine` command as a user runs it: real processes for the full flow, main() for the rest."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LUMA, REPO, backend_environment

from vitrine.cli.main import main
from vitrine.cli.progress import count_bar


def vitrine(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "vitrine"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "vitrine"]
    env = {**os.environ, "VITRINE_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=600)


def test_full_flow_in_real_processes(small_luma: Path, settings: object) -> None:
    home = settings.home  # type: ignore[attr-defined]
    ingest = vitrine(home, "ingest", str(small_luma), "--collection", "shop", "--json")
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["added"] == 12
    found = vitrine(home, "search", "shop", "--text", "black hoodie", "--json", "-k", "3")
    assert found.returncode == 0, found.stderr
    assert [h["category"] for h in json.loads(found.stdout)["hits"]] == ["Hoodies & Sweatshirts"] * 3
    table = vitrine(home, "search", "shop", "--text", "black hoodie", "-k", "3")
    assert "Hoodie" in table.stdout and "matching products" in table.stdout
    listed = vitrine(home, "collections", "list", "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["shop"]
    deleted = vitrine(home, "collections", "delete", "shop")
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    missing = vitrine(home, "search", "shop", "--text", "hoodie")
    assert missing.returncode == 3 and "no collection named 'shop'" in missing.stderr


def run_main(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> tuple[int, str, str]:
    with backend_environment(home):
        code = main(["--home", str(home), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_must_show_searches(capsys: pytest.CaptureFixture[str], luma_home: Path) -> None:
    code, out, _ = run_main(capsys, luma_home, "search", "luma", "--text", "black hoodie", "--json")
    hits = json.loads(out)["hits"]
    assert code == 0 and all(h["category"] == "Hoodies & Sweatshirts" for h in hits[:5])
    photo = str(LUMA / "images" / "mj01-orange_main.jpg")
    code, out, _ = run_main(capsys, luma_home, "search", "luma", "--image", photo, "--json")
    assert code == 0 and json.loads(out)["hits"][0]["id"] == "MJ01"
    code, out, _ = run_main(capsys, luma_home, "similar", "luma", "MH01", "--json")
    hits = json.loads(out)["hits"]
    assert code == 0 and "MH01" not in [h["id"] for h in hits]
    assert sum(h["category"] == "Hoodies & Sweatshirts" for h in hits[:5]) >= 4
    code, out, _ = run_main(capsys, luma_home, "search", "luma", "--text", "shorts", "-f", "colour=Red,Blue",
                            "--max-price", "40", "--json")
    hits = json.loads(out)["hits"]
    assert code == 0 and hits and all(h["price"] <= 40 for h in hits)
    code, out, _ = run_main(capsys, luma_home, "collections", "info", "luma", "--json")
    assert json.loads(out)["products"] == 191


@pytest.mark.parametrize("args, code, message", [
    (["search", "luma", "--text", "x", "--alpha", "2"], 2, "alpha"),
    (["search", "luma", "--text", "x", "-f", "colour"], 2, "field=value"),
    (["search", "luma", "--text", "x", "--range", "price=a:b"], 2, "field=low:high"),
    (["search", "nope", "--text", "x"], 3, "no collection named 'nope'"),
    (["search", "Bad Name", "--text", "x"], 2, "collection name"),
    (["similar", "luma", "NOPE"], 3, "'NOPE' is not in collection"),
    (["search", "luma", "--image", "/no/such.jpg"], 2, "not found"),
    (["search", "luma", "--image", "http://127.0.0.1:9/x.jpg"], 2, "non-public address"),
    (["collections", "info", "nope"], 3, "no collection"),
])
def test_errors_are_clear_and_non_zero(capsys: pytest.CaptureFixture[str], luma_home: Path, args: list[str],
                                       code: int, message: str) -> None:
    got, out, err = run_main(capsys, luma_home, *args)
    assert got == code and message in err and not out


def test_ingest_errors(capsys: pytest.CaptureFixture[str], settings: object, small_luma: Path) -> None:
    home = settings.home  # type: ignore[attr-defined]
    code, _, err = run_main(capsys, home, "ingest", str(small_luma.parent / "none.csv"), "-c", "shop")
    assert code == 2 and "not found" in err
    code, _, err = run_main(capsys, home, "ingest", str(small_luma), "-c", "shop", "--map", "id=sku")
    assert code == 2 and "'sku' is not in the catalog" in err
    code, out, _ = run_main(capsys, home, "ingest", str(small_luma), "-c", "shop", "--report",
                            str(home / "r.json"))
    assert code == 0 and "12 added" in out and json.loads((home / "r.json").read_text())["added"] == 12


def test_ingest_a_zip_of_a_catalog_with_its_photos(capsys: pytest.CaptureFixture[str], settings: object,
                                                   small_luma: Path) -> None:
    from test_jobs import zip_catalog

    home = settings.home  # type: ignore[attr-defined]
    archive = home / "shop.zip"
    archive.write_bytes(zip_catalog(small_luma))
    code, out, err = run_main(capsys, home, "ingest", str(archive), "-c", "shop", "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == 12
    code, _, err = run_main(capsys, home, "ingest", "http://127.0.0.1:9/catalog.csv", "-c", "shop")
    assert code == 2 and "non-public address" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_count_bars_show_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with count_bar(True, "photo") as progress:
        assert progress is not None
        progress(3, 10)
        progress(12, 10)  # more done than announced: the total follows
    assert "3/10" in terminal.getvalue() and "12/12" in terminal.getvalue()
    with count_bar(False, "photo") as progress:  # --json or --no-progress
        assert progress is None
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe
    with count_bar(True, "photo") as progress:
        assert progress is None
