"""File names and format version of a compiled artifact directory (shared by compiler and runtime)."""
import hashlib


FORMAT_VERSION = 2  # 2: an onnxruntime artifact may store exactly-fp16 fp32 initializers as fp16
READABLE_FORMAT_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
GENERATION_CONFIG = "generation_config.json"
SOURCE_DIR = "source"


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
