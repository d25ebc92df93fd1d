"""Output folders: replaced whole and atomically, and only when this program made them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asymsr.cli import main
from asymsr.util.fs import UnsafeOutput, atomic_directory

MARK = "MANIFEST"


def write_output(out: Path, text: str) -> None:
    with atomic_directory(out, MARK) as staging:
        (staging / MARK).write_text("")
        (staging / "file").write_text(text)


def test_a_failed_rewrite_keeps_the_previous_output_and_leaves_no_temporary_folder(tmp_path: Path) -> None:
    out = tmp_path / "result"
    write_output(out, "first")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(out, MARK) as staging:
            (staging / "file").write_text("half")
            raise KeyboardInterrupt
    assert (out / "file").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]
    write_output(out, "second")  # an earlier output (it holds the marker) is replaced
    assert (out / "file").read_text() == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_a_folder_the_program_did_not_make_is_refused_unless_forced(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("keep")
    with pytest.raises(UnsafeOutput, match=r"victim: holds files but no MANIFEST.*--force"):
        write_output(victim, "new")
    assert (victim / "notes.txt").read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["victim"]
    with atomic_directory(victim, MARK, force=True) as staging:
        (staging / MARK).write_text("")
    assert sorted(p.name for p in victim.iterdir()) == [MARK]
    (tmp_path / "empty").mkdir()
    write_output(tmp_path / "empty", "ok")  # an empty folder holds nothing to lose


def test_the_working_directory_an_input_and_a_file_are_never_outputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "a_file").write_text("x")
    for out, inputs, problem in [
        (Path("."), (), "working directory"),
        (tmp_path.parent, (), "working directory"),
        (tmp_path / "inputs", [tmp_path / "inputs"], "overlaps the input"),
        (tmp_path / "inputs" / "sub", [tmp_path / "inputs"], "overlaps the input"),
        (tmp_path / "a_file", (), "not a folder"),
    ]:
        with pytest.raises(UnsafeOutput, match=problem):
            with atomic_directory(out, MARK, force=True, inputs=inputs) as staging:
                (staging / MARK).write_text("")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "inputs"]


@pytest.mark.parametrize("command", ["fetch", "prepare"])
def test_fetch_and_prepare_refuse_a_foreign_folder_with_one_line_and_exit_2(
    command: str, image_folder: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("keep")
    argv = [command, str(image_folder), "--out", str(victim)] + (["--quiet"] if command == "prepare" else [])
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "victim" in error and "--force" in error
    assert [p.name for p in victim.iterdir()] == ["notes.txt"]
    monkeypatch.chdir(image_folder.parent)
    assert main([command, str(image_folder), "--out", "."]) == 2
    assert "working directory" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert not (victim / "notes.txt").exists()
    assert main(argv) == 0, "an earlier output of the same stage is replaced without --force"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], os.listdir(tmp_path)


def test_a_common_marker_name_alone_does_not_make_a_folder_ours(image_folder: Path, tmp_path: Path, capsys) -> None:
    web = tmp_path / "public"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "my web app"}')  # a PWA's manifest, not a patch set's
    (web / "index.html").write_text("<html></html>")
    assert main(["prepare", str(image_folder), "--out", str(web), "--quiet"]) == 2
    assert "holds files but no manifest.json" in capsys.readouterr().err
    assert sorted(p.name for p in web.iterdir()) == ["index.html", "manifest.json"]
    (tmp_path / "fetched").mkdir()
    (tmp_path / "fetched" / "MANIFEST.sha256").write_text("")  # a checksum list, but no SOURCE.json
    (tmp_path / "fetched" / "photo.png").write_bytes(b"x")
    assert main(["fetch", str(image_folder), "--out", str(tmp_path / "fetched")]) == 2
    assert (tmp_path / "fetched" / "photo.png").exists()


def test_a_symlinked_output_is_refused_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeOutput, match="link: is a symbolic link"):
        write_output(tmp_path / "link", "x")


def test_a_failed_swap_puts_the_earlier_output_back(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "result"
    write_output(out, "first")
    real_replace = os.replace

    def failing_second_rename(source, target):
        if Path(source).name.startswith(".result.asymsr-partial-"):
            raise OSError("disk gone")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_second_rename)
    with pytest.raises(OSError, match="disk gone"):
        write_output(out, "second")
    assert (out / "file").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["result"]
