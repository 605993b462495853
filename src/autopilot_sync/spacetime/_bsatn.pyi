"""Type stub of the BSATN product codec in C (`_bsatn.c`, built by `hatch_build.py`)."""

from collections.abc import Callable
from typing import Any

class Program:
    def __init__(
        self,
        description: tuple[Any, ...],
        python_encoder: Callable[[bytearray, Any], None],
        python_decoder: Callable[..., tuple[Any, int]],
        /,
    ) -> None: ...
    def decode(
        self, data: bytes | bytearray | memoryview, offset: int, budget: list[int] | None = None, /
    ) -> tuple[Any, int]: ...
    def encode_into(self, out: bytearray, value: Any, /) -> None: ...
    def encode(self, value: Any, /) -> bytes: ...

def configure(
    sum_value: type, identity: type, connection_id: type, timestamp: type, time_duration: type, /
) -> None: ...
def encode_tx_record(tx: Any, python_encoder: Callable[[Any], bytes], /) -> bytes: ...
