"""Builds spattn's Python module through the project's CMake build.

pip runs this from the source tree (`pip install --no-build-isolation ./python`).
The CMake build directory is build/python at the top of the tree (or
$SPATTN_PY_BUILD_DIR), kept between installs so that a second install only
rebuilds what changed.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent.parent


def project_version():
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"project\(spattn VERSION ([0-9.]+)", text).group(1)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = pathlib.Path(os.environ.get("SPATTN_PY_BUILD_DIR", ROOT / "build" / "python"))
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=Release",
                        "-DSPATTN_BUILD_TESTS=OFF", "-DSPATTN_BUILD_BENCH=OFF", "-DSPATTN_BUILD_TOOLS=OFF",
                        f"-DPython3_EXECUTABLE={sys.executable}"], check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "_spattn", "-j", str(os.cpu_count() or 1)],
                       check=True)
        built = sorted((build / "python" / "spattn").glob("_spattn*.so"))
        if not built:
            sys.exit(f"spattn: the CMake build in {build} made no Python module (are pybind11-dev and "
                     "python3-dev installed? CMake's output above says)")
        dest = pathlib.Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[-1], dest)


setup(
    name="spattn",
    version=project_version(),
    description="Hand-vectorized CPU sparse attention for diffusion and long-context language models",
    packages=["spattn"],
    ext_modules=[Extension("spattn._spattn", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=["numpy"],
    python_requires=">=3.9",
)
