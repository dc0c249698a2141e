"""Only the optional compiled Rijndael rounds; all metadata is in pyproject.toml.

`optional=True`: without a C compiler the install still succeeds and
conformance.wire.rijndael falls back to its pure-Python rounds.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("conformance.wire._rijndael", ["conformance/wire/_rijndael.c"],
                             optional=True, extra_compile_args=["-O2"])])
