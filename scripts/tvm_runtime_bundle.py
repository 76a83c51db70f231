"""Build a trimmed TVM runtime for a machine that only runs TVM artifacts (the GPU machine: Python 3.12, no TVM).

The apache-tvm wheel is 100 MB, nearly all of it the compiler library (libtvm_compiler.so, 259 MB unpacked); an
artifact needs only the runtime libraries (libtvm_runtime*.so, about 5 MB) and the Python package around them.
Without the compiler library `import tvm` runs in runtime-only mode (tvm/base.py). This script writes

    OUT/runtime/tvm        the installed tvm package less the compiler library, headers, sources and the compiler-only
                           subpackages (relax, topi, s_tir, ...), which runtime-only mode never imports
    OUT/runtime/tvm_ffi    from the apache-tvm-ffi wheel for the target Python (its core extension is per version)
    OUT/wheels/*.whl       with --serving: what `mistralrs serve` and the openai SDK need beyond the GPU image

Put OUT/runtime on PYTHONPATH there; install the wheels with pip --no-index --no-deps --target.
Usage: python scripts/tvm_runtime_bundle.py [--out build/tvm-gpu] [--python 3.12] [--serving]
"""
import argparse
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

COMPILER_ONLY = ["lib/libtvm_compiler.so", "3rdparty", "include", "src", "web", "relax", "topi", "s_tir", "exec",
                 "testing", "cmake", "lib64"]
FFI_UNUSED = ["include", "src", "3rdparty", "cython"]
# what the GPU image (bench/.. KINDS) lacks for serving: our API's web stack and the openai SDK with its closure
SERVING = ["falcon", "gunicorn", "openai", "httpx2", "httpcore2", "truststore", "anyio", "jiter", "pydantic",
           "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions", "sniffio", "h11"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/tvm-gpu"))
    parser.add_argument("--python", default="3.12", help="the target machine's Python version")
    parser.add_argument("--serving", action="store_true", help="also download the serving wheels")
    args = parser.parse_args()
    runtime = args.out / "runtime"
    shutil.rmtree(runtime, ignore_errors=True)
    copy_tvm(runtime / "tvm")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download(["apache-tvm-ffi"], Path(tmp), args.python)[0]
        unpack_ffi(wheel, runtime)
    if args.serving:
        shutil.rmtree(args.out / "wheels", ignore_errors=True)
        download(SERVING, args.out / "wheels", args.python)
    print(f"{runtime}: {size_mb(runtime):.1f} MB" + (f"; {args.out / 'wheels'}: {size_mb(args.out / 'wheels'):.1f} MB"
                                                     if args.serving else ""))
    return 0


def copy_tvm(dest: Path) -> None:
    source = Path(importlib.util.find_spec("tvm").origin).parent
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in COMPILER_ONLY:
        path = dest / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def download(names: list[str], dest: Path, python: str) -> list[Path]:
    """The wheels of the versions installed here, for `python` on x86-64 Linux."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in names]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python, "--implementation", "cp", *platforms, "-d", str(dest), *pins],
                   check=True)
    return sorted(dest.glob("*.whl"))


def unpack_ffi(wheel: Path, runtime: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(runtime, [n for n in archive.namelist() if n.startswith("tvm_ffi/")])
    for name in FFI_UNUSED:
        path = runtime / "tvm_ffi" / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


if __name__ == "__main__":
    sys.exit(main())
