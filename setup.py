"""The one compiled part: probe/_fused.c, an optional one-pass reduction (plain C, no torch
headers). Without a C compiler the build goes on and gradprobe uses torch's ops instead."""

import sys

from setuptools import Extension, setup

args = ["/O2"] if sys.platform == "win32" else ["-O3", "-std=c99"]
setup(
    ext_modules=[
        Extension(
            "gradprobe.probe._fused",
            ["src/gradprobe/probe/_fused.c"],
            extra_compile_args=args,
            optional=True,
        )
    ]
)
