"""Build of the one native extension (`bridges._keccak`); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("bridges._keccak", sources=["bridges/_keccak.c"], extra_compile_args=["-O3"])])
