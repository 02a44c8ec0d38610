"""Output policy and atomic file output, shared by every command.

- Outputs are written to a temp file in the same folder, then renamed over the target: a kill
  leaves the old file or the new one, never half of one. Temp files are named
  `.NAME.lt<pid>-<random>.tmp`; a later write into the same folder removes those whose process is
  gone, so an interrupted run leaves nothing behind once it is rerun.
- Outputs get the mode the umask gives (0644 under umask 022), like any file `open()` creates.
- `check_outputs` is the one rule for output options: never an input of the command, an existing
  file only with --force, a path that can be written; it runs before the work so nothing is lost.
- OSErrors on an output path become one LabeltreeError naming that path.
- One writer per output: `check_output` takes a lock (`.NAME.lock` beside it, flock'ed) held until the
  command ends, so a second command on the same output file or folder is refused while the first runs.
  The kernel drops the lock when its process dies, so a lock file left by a killed run is simply reused.
- Inputs are read through `read_input` / `check_input`: a regular file of sane size, never a FIFO or a
  device (which would hang or never end) and never a sparse giant read until memory runs out.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeltree.errors import LabeltreeError

if TYPE_CHECKING:  # numpy and Pillow only where a PNG is written: reading a YAML file through read_input needs none
    import numpy as np

MiB = 1 << 20
MAX_TEXT_BYTES = 64 * MiB  # YAML, CSV, gt.txt, JSON inputs: far above any real one
MAX_IMAGE_BYTES = 1024 * MiB  # one label or photo file
MAX_MODEL_BYTES = 16384 * MiB  # a checkpoint or exported model
_TMP_RE = re.compile(r"^\..+\.(?:lt(\d+)-[a-z0-9_]+|[a-z0-9_]{8})\.tmp$")
_cleaned: set[tuple[int, str]] = set()  # (pid, folder): stale temp files are looked for once per process and folder


def umask_mode(base: int = 0o666) -> int:
    """`base` with the process umask applied (what open() would give a new file)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(folder: str | Path) -> list[Path]:
    """Delete temp files of atomic writes whose writer is gone (killed run); returns what was removed.

    Files named by a live process are kept (a parallel worker may be writing them); old-style names
    (`.NAME.XXXXXXXX.tmp`, no pid) come only from killed runs of earlier versions and are removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TMP_RE.match(e.name)
        if m is None or (m.group(1) is not None and _alive(int(m.group(1)))):
            continue
        try:
            if e.is_file(follow_symlinks=False):
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            pass
    return removed


def output_error(target: str | Path, e: OSError) -> LabeltreeError:
    """One line for an OSError while writing `target` (no space, read-only, not a folder, ...)."""
    hint = {errno.ENOSPC: "the disk is full; free space or choose another path",
            errno.EDQUOT: "the disk quota is exceeded; free space or choose another path",
            errno.EROFS: "the file system is read-only; choose another path",
            errno.EACCES: "no permission to write there; choose another path",
            errno.EPERM: "no permission to write there; choose another path",
            errno.EISDIR: "it is a folder; give a file name",
            errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
            errno.EEXIST: "a part of the path is a file, not a folder; choose another path",
            errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
            errno.ELOOP: "the path is a symlink loop; choose another path"}.get(e.errno or 0, "choose another path")
    return LabeltreeError(f"cannot write output ({e.strerror or e}): {hint}", target)


def _mkdir_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(target, e) from None


def special_file(path: str | Path) -> str | None:
    """What `path` (links followed) is when it is a device, FIFO or socket; None for a file or nothing. An output
    is renamed over its target: that would put a file where /dev/null (a pipe, a socket) was, --force or not."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
        "a socket" if stat.S_ISSOCK(mode) else "a device"


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `target`; on success rename it onto `target`, else delete it."""
    target = Path(target)
    if target.is_dir():
        raise LabeltreeError("the output path is a folder; give a file name", target)
    what = special_file(target)
    if what:
        raise LabeltreeError(f"the output path is {what}, not a file (it would be replaced); give a file name", target)
    _mkdir_parent(target)
    key = (os.getpid(), str(target.parent))
    if key not in _cleaned:
        remove_stale_tmp(target.parent)
        _cleaned.add(key)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.lt{os.getpid()}-", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, umask_mode())
        finally:
            os.close(fd)
    except OSError as e:
        raise output_error(target, e) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as e:
        # an error on the temp file or the rename is about the output; others (an input read in the body) pass on
        if e.filename in (None, str(tmp_path), str(target)) or Path(str(e.filename)) in (tmp_path, target):
            raise output_error(target, e) from None
        raise
    finally:
        try:
            tmp_path.unlink(missing_ok=True)
        except OSError:
            pass


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2) + "\n")


def write_png(target: str | Path, array: np.ndarray, palette: np.ndarray | None = None,
              compress_level: int | None = None) -> None:
    """Write a label/image array as PNG atomically (uint16 -> 16-bit grey, uint8 -> 8-bit grey or
    palette when `palette` (N x 3 uint8) is given, HxWx3 -> RGB)."""
    import numpy as np
    from PIL import Image

    if array.dtype == np.uint16:
        im = Image.fromarray(array)  # mode I;16
    else:
        im = Image.fromarray(np.ascontiguousarray(array))
        if palette is not None:
            im = im.convert("P") if im.mode != "L" else im
            im.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    with atomic_path(target) as tmp:  # compress_level: zlib's 0..9 (None: Pillow's default, 6)
        im.save(tmp, format="PNG", **({} if compress_level is None else {"compress_level": compress_level}))


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when `a` and `b` name one file (hard links and symlinks included), existing or not."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, RuntimeError, ValueError):
        return str(a) == str(b)


def _writable_parent(p: Path) -> Path | None:
    """The nearest existing ancestor of `p`'s folder, or None when one of them is a regular file."""
    q = p.parent
    while True:
        if q.exists():
            return q if q.is_dir() else None
        if q.is_symlink():  # dangling link or loop
            return None
        if q == q.parent:
            return q
        q = q.parent


def _refuse_bundled(path: Path, option: str) -> None:
    """A bundled taxonomy, tree or config is an input of every command that names it (`merge cityscapes
    -o .../taxonomies/cityscapes.yaml --force` broke every later command): never replaced, --force or not."""
    from labeltree.resources import config_dir, taxonomy_dir

    if not (path.exists() or path.is_symlink()):
        return
    real = Path(os.path.realpath(path))
    for d in (taxonomy_dir(), config_dir()):
        if real.is_relative_to(os.path.realpath(d)):
            raise LabeltreeError(f"{option} would replace a file bundled with labeltree (it is read as a taxonomy, "
                                 "tree or config); write to a path of your own", path)


def check_output(path: Path, option: str, inputs: Iterable[str | Path] = (), force: bool = False,
                 folder: bool = False, lock: bool = True) -> None:
    """Refuse, before any work, an output that is an input, exists without --force, or cannot be written;
    then hold it (`hold_output`) unless `lock` is False (a process that shares another's output)."""
    for i in inputs:
        if same_file(path, i):
            raise LabeltreeError(f"{option} names an input of this command; choose another path "
                                 "(no command writes over its inputs)", path)
    _refuse_bundled(path, option)
    try:
        is_dir, exists = path.is_dir(), path.exists() or path.is_symlink()
    except OSError as e:
        raise output_error(path, e) from None
    if folder:
        if exists and not is_dir:
            raise LabeltreeError(f"{option} must be a folder, but a file is there; choose another path", path)
    else:
        if is_dir:
            raise LabeltreeError(f"{option} is a folder; give a file name", path)
        what = special_file(path)
        if what:
            raise LabeltreeError(f"{option} is {what}, not a file: writing the output would replace it (--force or "
                                 "not); give a file name", path)
        if exists and not force:
            raise LabeltreeError(f"{option}: the file exists; pass --force to replace it", path)
    parent = path if folder and is_dir else _writable_parent(path)
    if parent is None:
        raise LabeltreeError(f"{option}: a part of the path is a file (or a broken or looping link), not a folder; "
                             "choose another path", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LabeltreeError(f"{option}: no permission to write in {parent} (read-only?); choose another path", path)
    if lock:
        hold_output(path, option)


def check_outputs(outputs: dict[str, str | Path | None], inputs: Iterable[str | Path] = (),
                  force: bool = False) -> None:
    """`check_output` for every given output option, and no two options naming one file."""
    given = [(o, Path(p)) for o, p in outputs.items() if p is not None]
    inputs = [Path(i) for i in inputs]
    for k, (opt, p) in enumerate(given):
        check_output(p, opt, inputs, force)
        for opt2, p2 in given[:k]:
            if same_file(p, p2):
                raise LabeltreeError(f"{opt} and {opt2} name the same file; give each its own path", p)


def refuse_replacing_inside(outputs: dict[str, str | Path | None], folders: Iterable[str | Path | None]) -> None:
    """An existing file inside an input folder (a dataset root, a prediction folder) is part of that
    input, even if this command does not read it: no output replaces it, --force or not."""
    for opt, out in outputs.items():
        if out is None or not (os.path.exists(out) or os.path.islink(out)):
            continue
        for folder in folders:
            if folder is not None and os.path.isdir(folder) and \
                    Path(os.path.realpath(out)).is_relative_to(os.path.realpath(folder)):
                raise LabeltreeError(f"{opt} would replace a file inside the input folder {folder} (no command "
                                     "writes over its inputs); choose a path outside it", out)


def input_sparing_png_writer(inputs: Iterable[str | Path]) -> Callable[..., None]:
    """`write_png` that refuses to replace any of `inputs`: a prediction folder may be the image folder."""
    sources = {os.path.realpath(p) for p in inputs}

    def write(target: str | Path, arr: np.ndarray, compress_level: int | None = None) -> None:
        if os.path.realpath(target) in sources:
            raise LabeltreeError("this output would replace an input image; choose another -o", target)
        write_png(target, arr, compress_level=compress_level)

    return write


# -- inputs: regular files of sane size ----------------------------------------------------------

def _size_text(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _check_stat(st: os.stat_result, path: str | Path, what: str, limit: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise LabeltreeError(f"expected {_a(what)} file, found a directory", path)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "no regular file")
        raise LabeltreeError(f"the {what} file is {kind}, not a regular file; give the file itself", path)
    if st.st_size > limit:
        raise LabeltreeError(f"the {what} file is {_size_text(st.st_size)}, over the {_size_text(limit)} any "
                             f"{what} file can sensibly be; is it the right file?", path)


def check_input(path: str | Path, what: str = "input", limit: int = MAX_IMAGE_BYTES) -> Path:
    """Refuse, without opening it, an input that is missing, a folder, a FIFO / device / socket, or over
    `limit` bytes (a link to /dev/zero, an 8 GiB sparse file). For files a library opens itself."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LabeltreeError(f"{what} file not found (searched {Path(path).absolute()})", path) from None
    except OSError as e:
        raise LabeltreeError(f"cannot read the {what} file ({e.strerror or e})", path) from None
    _check_stat(st, path, what, limit)
    return Path(path)


def read_input(path: str | Path, what: str = "input", limit: int = MAX_IMAGE_BYTES, size: int = -1) -> bytes:
    """The bytes of an input file (the first `size` when given), checked on the open file itself
    (O_NONBLOCK: a FIFO never blocks the open) to be a regular file of at most `limit` bytes.
    A missing file raises FileNotFoundError, for the caller's own advice on where it should be."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise LabeltreeError(f"expected {_a(what)} file, found a directory", path) from None
    except OSError as e:
        raise LabeltreeError(f"cannot read the {what} file ({e.strerror or e})", path) from None
    try:
        _check_stat(os.fstat(fd), path, what, limit)  # before fdopen, which refuses a folder by its fd number
    except LabeltreeError:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read(size)
        except OSError as e:
            raise LabeltreeError(f"cannot read the {what} file ({e.strerror or e})", path) from None


def read_input_text(path: str | Path, what: str = "input", limit: int = MAX_TEXT_BYTES,
                    encoding: str = "utf-8-sig") -> str:
    """`read_input` decoded as text (a BOM dropped), with one line for a file that is not such text."""
    data = read_input(path, what, limit)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise LabeltreeError(f"the {what} file is not UTF-8 text ({e.reason} at byte {e.start})", path) from None


# -- one writer per output ------------------------------------------------------------------------

_locks: dict[str, tuple[int, int]] = {}  # realpath of the output -> (fd of its lock file, owner pid)


def lock_path(target: str | Path) -> Path:
    """The lock file of an output file or folder: `.NAME.lock` beside it."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.lock"


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().split()[0]
        return f"process {int(pid)}"
    except (OSError, ValueError, IndexError):
        return "another process"


def hold_output(target: str | Path, option: str) -> None:
    """Lock `target` (an output file or folder) for this process until the command ends, or refuse with
    one line when another live process holds it. Reentrant within one process."""
    key = os.path.realpath(target)
    if key in _locks:
        return
    lock = lock_path(key)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(target, e) from None  # named as the output: its path is what the user gave
    for _ in range(8):  # the lock file may be unlinked by its releasing owner between our open and flock
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), umask_mode())
        except IsADirectoryError:
            raise LabeltreeError(f"{option}: its lock file {lock} is a folder; remove it", target) from None
        except OSError as e:
            raise output_error(target, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LabeltreeError(f"{option}: {_holder(lock)} is writing this output now (lock {lock}); wait for "
                                 "it to finish, or choose another path", target) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except OSError:
            same = False
        if same:
            _locks[key] = (fd, os.getpid())
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError as e:
                release_outputs()
                raise output_error(lock, e) from None
            return
        os.close(fd)
    raise LabeltreeError(f"{option}: could not lock this output (lock {lock} keeps changing); retry", target)


def _release(key: str) -> None:
    fd, pid = _locks[key]
    if pid != os.getpid():
        return  # a forked worker: the lock is its parent's
    try:
        os.unlink(lock_path(key))
    except OSError:
        pass
    os.close(fd)
    del _locks[key]


def release_outputs() -> None:
    """Drop every output lock this process holds (the command ended); forked workers leave them alone."""
    for key in list(_locks):
        _release(key)


@contextmanager
def locked_output(target: str | Path, option: str) -> Iterator[None]:
    """`hold_output` for the body only (library callers), unless the lock was already held."""
    key = os.path.realpath(target)
    held = key in _locks
    hold_output(target, option)
    try:
        yield
    finally:
        if not held and key in _locks:
            _release(key)


atexit.register(release_outputs)
