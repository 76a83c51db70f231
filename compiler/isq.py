"""ISQ schemes: mistral.rs's quantization names, parsed case-insensitively, mapped onto what we compile."""
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IsqScheme:
    """Weight-only block quantization: w = (q - zero_point) * scale on blocks of `block_size` along K."""

    name: str
    bits: int
    block_size: int
    symmetric: bool
    float_zero_point: bool = False
    refine: bool = False  # per-block search of scale (and zero point) for the least squared error (K-quant style)
    embedding_scheme: str | None = None  # token embedding / tied LM head kept at this scheme (like llama.cpp's Q4_K_M)


SCHEMES = {
    s.name: s
    for s in (
        IsqScheme("Q4_0", bits=4, block_size=32, embedding_scheme="Q8_0", symmetric=True),
        IsqScheme("Q4_1", bits=4, block_size=32, embedding_scheme="Q8_0", symmetric=False, float_zero_point=True),
        IsqScheme("Q4K", bits=4, block_size=32, embedding_scheme="Q8_0", symmetric=False, float_zero_point=True,
                  refine=True),
        IsqScheme("Q8_0", bits=8, block_size=32, symmetric=True, refine=True),
        IsqScheme("Q8_1", bits=8, block_size=32, symmetric=False),
    )
}
BIT_SHORTHANDS = {"4": "Q4K", "8": "Q8_0"}
UNQUANTIZED = ("F32", "NONE")
MISTRALRS_NAMES = (
    "2 3 4 5 6 8 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q2K Q3K Q4K Q5K Q6K Q8K HQQ8 HQQ4 FP8 "
    "AFQ8 AFQ6 AFQ4 AFQ3 AFQ2 F8Q8 MXFP4"
).split()


class UnknownIsqType(ValueError):
    pass


def accepted_names() -> list[str]:
    return [*BIT_SHORTHANDS, *SCHEMES, "F32"]


def parse_isq(value: str | None) -> IsqScheme | None:
    """A mistral.rs ISQ string (or a bit shorthand) -> scheme; None / "F32" / "none" -> no quantization."""
    if value is None:
        return None
    key = value.strip().upper()
    if key in UNQUANTIZED:
        return None
    key = BIT_SHORTHANDS.get(key, key)
    if key in SCHEMES:
        return SCHEMES[key]
    accepted = ", ".join(accepted_names())
    if key in MISTRALRS_NAMES:
        raise UnknownIsqType(f"ISQ type {value} is a mistral.rs type this compiler does not support; supported: {accepted}")
    raise UnknownIsqType(f"ISQ type {value} unknown, choose one of {accepted}")
