"""The native CPU loops of the RoI ops (``kernels/``), compiled on first use.

They form a plain CPython extension without PyTorch headers: a C++17 compiler builds it in a
few seconds, once per source version, Python and platform, into a cache folder
(``$RFMAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/rfmap``, else ``~/.cache/rfmap``), from which
later processes load it at once (builds for other sources, say of another rfmap installed
beside this one, are left alone: about 150 kB each); where that folder cannot be written,
each process builds its own copy in a private temporary folder.  Without a compiler
(or with ``RFMAP_NATIVE=0``) the ops run their pure-PyTorch code paths, which compute the same
numbers, bit for bit (the tests compare both); :func:`status` says which is in use and why.
The compiler is ``$CXX``, else ``c++``.  As with ``torch.utils.cpp_extension``'s cache, a
library in the cache folder is trusted: point ``RFMAP_CACHE_DIR`` only at a folder that
others cannot write.

Why not ``torch.utils.cpp_extension.load``: importing it takes over a second (it imports
setuptools), and it compiles against PyTorch's headers and links its libraries, which these
loops, handed plain pointers, do not use; one compiler call and an atomic rename suffice.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path
from types import ModuleType

_SOURCES = Path(__file__).with_name("kernels")
_MAIN = _SOURCES / "module.cpp"  # includes the headers beside it
_NAME = "rfmap_kernels"  # the module name the source's PyInit_ function is for
_FLAGS = ["-O3", "-fno-trapping-math", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fvisibility=hidden", "-Wno-psabi"]
#: seconds a build may take before it is given up (the first use of an op waits for it)
_TIMEOUT = 120

_lock = threading.Lock()
_state: dict[str, object] = {}


def _cache_dir() -> Path:
    if os.environ.get("RFMAP_CACHE_DIR"):
        return Path(os.environ["RFMAP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rfmap"


def _command(compiler: list[str], output: Path) -> list[str]:
    include = sysconfig.get_paths()["include"]
    extra = ["-undefined", "dynamic_lookup"] if sys.platform == "darwin" else []
    return [*compiler, *_FLAGS, *extra, f"-I{include}", str(_MAIN), "-o", str(output)]


def _compile(compiler: list[str], output: Path) -> None:
    name = " ".join(compiler)
    try:
        proc = subprocess.run(_command(compiler, output), capture_output=True, text=True, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} took over {_TIMEOUT} s") from None
    if proc.returncode != 0 or not output.exists():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{name} failed: {last[:200]}")


def _load(library: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(_NAME, library)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {library}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build() -> ModuleType:
    """Compile (unless cached) and import the extension; raises ``RuntimeError`` saying why not.
    A cache folder that cannot be written gets a build for this process alone, in a private
    temporary folder removed once the library is loaded."""
    if os.environ.get("RFMAP_NATIVE", "1") == "0":
        raise RuntimeError("disabled by RFMAP_NATIVE=0")
    if sys.platform == "win32":
        raise RuntimeError("not built on Windows")
    compiler = shlex.split(os.environ.get("CXX") or "c++")  # may carry a launcher: "ccache g++"
    if not compiler or shutil.which(compiler[0]) is None:
        raise RuntimeError(f"no C++ compiler ({' '.join(compiler)!r} not found)")
    digest = hashlib.sha256(" ".join([*compiler, *_FLAGS, sys.version, sys.platform]).encode())
    for path in sorted(_SOURCES.glob("*.[ch]*")):  # module.cpp and its headers
        digest.update(path.name.encode() + path.read_bytes())
    folder = _cache_dir()
    name = f"{_NAME}-{digest.hexdigest()[:16]}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    if (folder / name).exists():
        return _load(folder / name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = tempfile.TemporaryDirectory(dir=folder)  # built aside, then moved in at once
    except OSError:
        with tempfile.TemporaryDirectory() as private:
            _compile(compiler, Path(private) / name)
            return _load(Path(private) / name)
    with work:
        _compile(compiler, Path(work.name) / name)
        os.replace(Path(work.name) / name, folder / name)
    return _load(folder / name)


def kernels() -> ModuleType | None:
    """The compiled module, or ``None`` when it cannot be had (see :func:`status`); built once
    per process, by the first caller."""
    if "module" not in _state:
        with _lock:
            if "module" not in _state:
                try:
                    _state["module"], _state["why"] = _build(), "compiled"
                except Exception as error:  # noqa: BLE001 - an optional speed-up: the reason is kept for status()
                    why = str(error) if isinstance(error, RuntimeError) else f"{type(error).__name__}: {error}"
                    _state["module"], _state["why"] = None, why
    return _state["module"]  # type: ignore[return-value]


def status() -> str:
    """``"native"`` or ``"pytorch (<reason>)"``: which loops the ops run on the CPU (the
    max-pooling ops' loops, the linear ops' sparse matrices), building the native ones if that
    has not been tried yet in this process."""
    return "native" if kernels() is not None else f"pytorch ({_state['why']})"
