"""robolearn.files: atomic writes with the umask's mode, cleanup on failure, one-line errors."""

import errno
import os
import stat
from pathlib import Path

import pytest

from robolearn.files import FileWriteError, check_writable_dir, temp_files, write_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_new_file_mode_follows_the_umask_like_open(tmp_path, umask):
    umask(0o022)
    assert mode(write_atomic(tmp_path / "a.bin", b"abc")) == 0o644
    umask(0o077)
    assert mode(write_atomic(tmp_path / "b.bin", b"abc")) == 0o600
    umask(0o002)
    path = write_atomic(tmp_path / "a.bin", b"replaced")  # a replaced file gets the new file's mode
    assert mode(path) == 0o664 and path.read_bytes() == b"replaced"
    with open(tmp_path / "reference", "wb"):
        pass
    assert mode(tmp_path / "reference") == 0o664


def test_writer_callable_and_missing_parents(tmp_path):
    path = write_atomic(tmp_path / "run" / "checkpoints" / "last.pt", lambda handle: handle.write(b"x" * 1000))
    assert path.read_bytes() == b"x" * 1000
    assert leftovers(path.parent) == []


@pytest.mark.parametrize("failure", [ValueError("bad state"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path, failure):
    path = write_atomic(tmp_path / "last.pt", b"old contents")

    def writer(handle):
        handle.write(b"half of the new")
        handle.flush()
        assert len(leftovers(tmp_path)) == 1  # the temp file existed while writing
        raise failure

    with pytest.raises(type(failure)):
        write_atomic(path, writer)
    assert path.read_bytes() == b"old contents"
    assert leftovers(tmp_path) == [] and temp_files(path) == []


def test_disk_full_is_a_one_line_error_naming_the_path(tmp_path):
    path = write_atomic(tmp_path / "last.pt", b"old contents")

    def writer(handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(FileWriteError) as err:
        write_atomic(path, writer)
    assert str(err.value) == f"{path}: cannot write (No space left on device)"
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC and err.value.path == path
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert path.read_bytes() == b"old contents" and leftovers(tmp_path) == []


def test_a_parent_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "run").write_text("not a directory")
    with pytest.raises(FileWriteError) as err:
        write_atomic(tmp_path / "run" / "last.pt", b"x")
    assert str(err.value).startswith(f"{tmp_path / 'run' / 'last.pt'}: cannot write (")
    assert "\n" not in str(err.value)


def test_temp_files_lists_only_this_files_leftovers(tmp_path):
    for name in (".last.pt.1a2b.tmp", ".last.pt.3c4d.tmp", ".other.pt.5e6f.tmp", "last.pt"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(p.name for p in temp_files(tmp_path / "last.pt")) == [".last.pt.1a2b.tmp", ".last.pt.3c4d.tmp"]


def test_check_writable_dir_leaves_nothing_behind(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b" / "export") == tmp_path / "a" / "b" / "export"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "policy.json").write_text("{}")
    check_writable_dir(tmp_path / "export")
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["policy.json"]


def test_check_writable_dir_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileWriteError) as err:
        check_writable_dir(tmp_path / "file", "the export")
    assert str(err.value) == f"{tmp_path / 'file'}: cannot write the export here (Not a directory)"
    with pytest.raises(FileWriteError) as err:
        check_writable_dir(tmp_path / "file" / "export", "the export")
    assert str(err.value).startswith(f"{tmp_path / 'file' / 'export'}: cannot write the export here (")
    with pytest.raises(FileWriteError) as err:  # /proc accepts no new directories, even for root
        check_writable_dir("/proc/robolearn-test/export", "the export")
    assert str(err.value).startswith("/proc/robolearn-test/export: cannot write the export here (")
    assert err.value.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS)
    assert not Path("/proc/robolearn-test").exists()
