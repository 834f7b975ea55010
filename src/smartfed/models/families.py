"""What model families call their linear layers: the targets a pool module or a fresh LoRA adapts."""

# Llama-style decoders (Llama, Qwen2, Mistral, SmolLM2, Gemma): attention and MLP projections.
LLAMA_LINEAR_TYPES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
