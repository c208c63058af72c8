"""Types of the native extension built from `bridges/_keccak.c` (any C-contiguous buffer is accepted)."""

from typing import Any

from _typeshed import ReadableBuffer
from numpy.typing import NDArray

def keccak256(data: ReadableBuffer | NDArray[Any], /) -> bytes: ...
def keccak256_batch(data: ReadableBuffer | NDArray[Any], count: int, /) -> bytes: ...
